//! A table of named cases: every row runs, then the test fails once with
//! every row that went wrong.

/// Runs every row of a table, then fails once with every row that went wrong.
/// Each row also prints `case | expected | got` (shown with `--nocapture`).
#[derive(Default)]
pub struct Table {
    family: &'static str,
    failures: Vec<String>,
    rows: usize,
}

impl Table {
    pub fn new(family: &'static str) -> Table {
        Table {
            family,
            ..Table::default()
        }
    }

    /// Records one row: `ok` is the verdict, `got` what was observed.
    pub fn row(&mut self, name: &str, expected: &str, got: &str, ok: bool) {
        self.rows += 1;
        let verdict = if ok { "ok" } else { "FAIL" };
        println!("{} | {name} | {expected} | {got} | {verdict}", self.family);
        if !ok {
            self.failures
                .push(format!("case {name:?}: expected {expected}, got {got}"));
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} cases failed:\n  {}",
            self.family,
            self.failures.len(),
            self.rows,
            self.failures.join("\n  ")
        );
    }
}

/// A short, printable form of a body for failure messages.
pub fn short(s: &str) -> String {
    let mut t: String = s.chars().take(300).collect();
    if s.chars().count() > 300 {
        t.push('…');
    }
    format!("{t:?}")
}
