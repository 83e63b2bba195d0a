//! `protected_path`: the file matches a protected glob; at least CRITICAL, never automatic.

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out};
use crate::finding::Rule;
use crate::source::Loc;

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    let path = ctx.path.trim_start_matches("./");
    if let Some(glob) = ctx.settings.protected_paths.matching(path) {
        let row = ctx.added.first().copied().unwrap_or(0);
        out.add(
            Rule::ProtectedPath,
            RiskLevel::Critical,
            Loc {
                row,
                col: 1,
                end_row: row,
            },
            format!("{path} is protected (pattern {glob:?}); two approvers must review it"),
        );
    }
}
