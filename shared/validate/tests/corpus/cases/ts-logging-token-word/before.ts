import { Pool } from 'pg';
import type { ScheduledEvent } from 'aws-lambda';

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 2 });

export interface DailyTotal {
  region: string;
  total: number;
}

export async function dailyTotals(day: string): Promise<DailyTotal[]> {
  const result = await pool.query(
    'SELECT region, SUM(amount) AS total FROM sales WHERE day = $1 GROUP BY region',
    [day],
  );
  return result.rows as DailyTotal[];
}

export async function handler(event: ScheduledEvent): Promise<{ regions: number }> {
  const day = event.time.slice(0, 10);
  const totals = await dailyTotals(day);
  console.log(JSON.stringify({ msg: 'daily totals', day, regions: totals.length }));
  return { regions: totals.length };
}
