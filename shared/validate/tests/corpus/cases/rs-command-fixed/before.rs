//! Sales queries for the reports function.

use sqlx::PgPool;
use sqlx::Row;

/// One region's total for a day.
pub struct DailyTotal {
    pub region: String,
    pub total: i64,
}

/// Totals per region for `day` (YYYY-MM-DD).
pub async fn daily_totals(pool: &PgPool, day: &str) -> Result<Vec<DailyTotal>, sqlx::Error> {
    let rows = sqlx::query("SELECT region, SUM(amount) AS total FROM sales WHERE day = $1 GROUP BY region")
        .bind(day)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| DailyTotal { region: r.get("region"), total: r.get("total") })
        .collect())
}

/// Stores one uploaded report file under the work directory.
pub fn store_upload(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}
