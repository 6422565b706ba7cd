//! Scheduled jobs (issue "A cron replacement"): what 1,000 cron jobs cost
//! exeio while it waits for them, and how late an every-second job starts.

use std::path::Path;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::exeio::{Exeio, wait_for};
use crate::http::Conn;
use crate::workloads::POOL_IDLE;
use crate::{Metric, Options, Target, Unit, metric, name, quantile};

const JOBS: usize = 1000;
/// Of which this many have a seconds field that fires during the window.
const FIRING: usize = 10;

/// xorshift64*: a seeded PRNG, so every run schedules the same jobs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }

    fn pick<'a, T>(&mut self, of: &'a [T]) -> &'a T {
        &of[(self.next() % of.len() as u64) as usize]
    }
}

/// A job that fires every minute at the seconds in `secs`.
struct Firing {
    expr: String,
    secs: [bool; 60],
}

fn firing(rng: &mut Rng) -> Firing {
    let mut secs = [false; 60];
    let field = if rng.next().is_multiple_of(2) {
        let step = *rng.pick(&[5u32, 10, 15, 20, 30]);
        for s in (0..60).step_by(step as usize) {
            secs[s] = true;
        }
        format!("*/{step}")
    } else {
        let n = rng.range(2, 4);
        let mut list: Vec<u32> = (0..n).map(|_| rng.range(0, 59)).collect();
        list.sort_unstable();
        list.dedup();
        for &s in &list {
            secs[s as usize] = true;
        }
        list.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    Firing {
        expr: format!("{field} * * * * *"),
        secs,
    }
}

/// A random expression that cannot fire this month or the next (its
/// month field leaves them out; the day-of-week field is only restricted
/// when the day-of-month one is `*`, so the two never widen each other).
fn far_future(rng: &mut Rng, month_now: u32) -> String {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let next = month_now % 12 + 1;
    if rng.next().is_multiple_of(50) && month_now != 12 && month_now != 1 {
        return "@yearly".into();
    }
    let unit = |rng: &mut Rng, lo: u32, hi: u32| -> String {
        match rng.next() % 5 {
            0 => "*".into(),
            1 => rng.range(lo, hi).to_string(),
            2 => {
                let a = rng.range(lo, hi - 1);
                format!("{a}-{}", rng.range(a + 1, hi))
            }
            3 => format!("*/{}", rng.range(2, (hi - lo).clamp(2, 15))),
            _ => {
                let (a, b) = (rng.range(lo, hi), rng.range(lo, hi));
                if a == b {
                    a.to_string()
                } else {
                    format!("{},{}", a.min(b), a.max(b))
                }
            }
        }
    };
    let seconds = rng
        .next()
        .is_multiple_of(4)
        .then(|| rng.range(0, 59).to_string());
    let minute = unit(rng, 0, 59);
    let hour = unit(rng, 0, 23);
    let dom = unit(rng, 1, 28);
    let allowed: Vec<u32> = (1..=12).filter(|&m| m != month_now && m != next).collect();
    let mut months: Vec<u32> = (0..rng.range(1, 3)).map(|_| *rng.pick(&allowed)).collect();
    months.sort_unstable();
    months.dedup();
    let names = rng.next().is_multiple_of(2);
    let month = months
        .iter()
        .map(|&m| {
            if names {
                MONTHS[m as usize - 1].to_owned()
            } else {
                m.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let dow = if dom == "*" {
        (*rng.pick(&["*", "MON-FRI", "0,6", "7", "1-5/2", "SUN"])).to_owned()
    } else {
        "*".into()
    };
    let five = format!("{minute} {hour} {dom} {month} {dow}");
    match seconds {
        Some(s) => format!("{s} {five}"),
        None => five,
    }
}

/// 1,000 cron jobs, 10 of them due every few seconds: exeio's CPU and
/// context switches over the idle window next to the ticks that came due.
/// Then an every-second job's start delay, read from the child's own clock.
pub fn cron(bin: &Path, opts: &Options) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut rng = Rng(0x6578_6569_6f2d_6372);
    let month_now = civil(unix_now() as i64).1;
    let mut conn = ex.conn();
    let mut fire = Vec::new();
    for i in 0..JOBS {
        // Spread the firing ones through the list.
        let expr = if i % (JOBS / FIRING) == 0 {
            let f = firing(&mut rng);
            let e = f.expr.clone();
            fire.push((format!("cron-{i}"), f));
            e
        } else {
            far_future(&mut rng, month_now)
        };
        let spec = json!({"id": format!("cron-{i}"), "command": "true",
                          "schedule": expr, "timezone": "UTC"});
        conn.ok("POST", "/add", Some(&spec.to_string()))
            .map_err(|e| format!("job {i} ({expr}): {e}"))?;
    }
    drop(conn);
    thread::sleep(POOL_IDLE);
    let w0 = unix_now();
    let before = ex.cpu()?;
    thread::sleep(Duration::from_secs(opts.idle_seconds));
    let after = ex.cpu()?;
    let w1 = unix_now();
    let (cpu_ns, gone) = after.since(&before);
    let ticks_cpu = after.ticks.saturating_sub(before.ticks);
    let switches = after.switches.saturating_sub(before.switches);
    let by_thread = after.switches_by_name(&before);

    // Ticks due in [w0, w1): per job, and distinct seconds.
    let (first, last) = (w0.ceil() as u64, w1.ceil() as u64);
    let mut ticks = 0u64;
    let mut seconds = 0u64;
    for t in first..last {
        let n = fire
            .iter()
            .filter(|(_, f)| f.secs[(t % 60) as usize])
            .count() as u64;
        ticks += n;
        seconds += u64::from(n > 0);
    }
    // What exeio recorded for the same window.
    let mut conn = ex.conn();
    let mut recorded = 0u64;
    for (id, _) in &fire {
        let v = conn.ok("GET", &format!("/runs/{id}?limit=500"), None)?;
        for r in v["runs"].as_array().into_iter().flatten() {
            let at = r["scheduled_at"].as_str().and_then(parse_rfc3339);
            if at.is_some_and(|at| (at as f64) >= w0 && (at as f64) < w1) {
                recorded += 1;
            }
        }
    }
    let list = conn.ok("GET", "/list", None)?;
    let stray = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            let id = p["id"].as_str().unwrap_or("");
            !fire.iter().any(|(f, _)| f == id) && p["run_count"].as_u64().unwrap_or(0) > 0
        })
        .count();
    for (id, _) in &fire {
        conn.ok("POST", &format!("/remove/{id}"), None)?;
    }
    let late = start_delays(&mut conn, opts.cron_runs)?;

    let secs = opts.idle_seconds;
    let per_tick = |n: u64| {
        if ticks == 0 {
            n as f64
        } else {
            n as f64 / ticks as f64
        }
    };
    let mut out = vec![
        metric(
            name(format!("CPU over {secs} s, 1,000 jobs")),
            cpu_ns as f64 / 1e6,
            Unit::Ms,
            Target::None,
        ),
        metric(
            "  same, from utime+stime (10 ms ticks)",
            ticks_cpu as f64 * 10.0,
            Unit::Ms,
            Target::None,
        ),
        metric(
            name(format!("context switches over {secs} s")),
            switches as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  ticks that came due",
            ticks as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  distinct seconds with a tick",
            seconds as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  runs exeio recorded in the window",
            recorded as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  context switches per due tick",
            per_tick(switches),
            Unit::Times,
            Target::None,
        ),
        metric(
            "far-future jobs that ran",
            stray as f64,
            Unit::Count,
            Target::AtMost(0.0),
        ),
    ];
    for (thread, n) in by_thread.iter().filter(|t| t.1 > 0) {
        out.push(metric(
            name(format!("  switches of thread {thread}")),
            *n as f64,
            Unit::Count,
            Target::None,
        ));
    }
    if gone > 0 {
        out.push(metric(
            "  threads that exited (switches not counted)",
            gone as f64,
            Unit::Count,
            Target::None,
        ));
    }
    out.extend([
        metric(
            name(format!("`* * * * * *` start delay, p50 of {}", late.len())),
            quantile(&late, 0.5),
            Unit::Ms,
            Target::None,
        ),
        metric(
            "  p99",
            quantile(&late, 0.99),
            Unit::Ms,
            Target::AtMost(20.0),
        ),
        metric("  max", quantile(&late, 1.0), Unit::Ms, Target::None),
    ]);
    Ok(out)
}

/// An every-second job whose child prints its own start time: how late
/// each of `runs` scheduled runs started after its `scheduled_at`.
fn start_delays(conn: &mut Conn, runs: usize) -> Result<Vec<f64>, String> {
    let spec = json!({"id": "every", "command": "date", "args": ["+%s.%N"],
                      "schedule": "* * * * * *", "timezone": "UTC"});
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    let runs_path = format!("/runs/every?limit={}", runs + 10);
    let page = format!("/logs/every?page=1&page_size={}", (runs * 8).min(1000));
    wait_for(
        &format!("{runs} scheduled runs"),
        Duration::from_secs(runs as u64 + 20),
        Duration::from_millis(500),
        || {
            let v = conn.ok("GET", &runs_path, None)?;
            // Scheduled runs that ended (their output is in the log).
            let done = v["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["trigger"] == "schedule" && !r["ended_at"].is_null())
                .count();
            if done < runs {
                return Ok(None);
            }
            let runs_v = v;
            let log = conn.ok("GET", &page, None)?;
            let printed = printed_starts(&log);
            let mut late: Vec<(u64, f64)> = runs_v["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["trigger"] == "schedule")
                .filter_map(|r| {
                    let n = r["run"].as_u64()?;
                    let at = parse_rfc3339(r["scheduled_at"].as_str()?)?;
                    let started = printed.iter().find(|p| p.0 == n)?.1;
                    Some((n, (started - at as f64) * 1000.0))
                })
                .collect();
            if late.len() < runs {
                return Ok(None);
            }
            late.sort_by_key(|l| l.0);
            Ok(Some(late.iter().take(runs).map(|l| l.1).collect()))
        },
    )
}

/// (run number, seconds since the epoch) of `[ts] RUN#N STDOUT: S.NANOS`.
fn printed_starts(page: &Value) -> Vec<(u64, f64)> {
    page["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let l = l.as_str()?;
            let rest = &l[l.find("RUN#")? + 4..];
            let (n, rest) = rest.split_once(' ')?;
            let t = rest.strip_prefix("STDOUT: ")?.trim();
            Some((n.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant).
fn civil(unix: i64) -> (i64, u32, u32) {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date (H. Hinnant).
fn days(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-28T09:50:57Z` or with `+HH:MM`/`-HH:MM` -> seconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (h, mi, sec) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let t = days(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(t - offset)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(super::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::parse_rfc3339("2026-11-28T09:50:57Z"),
            Some(1_795_859_457)
        );
        assert_eq!(
            super::parse_rfc3339("2026-11-28T10:50:57+01:00"),
            Some(1_795_859_457)
        );
        assert_eq!(super::civil(1_795_859_457), (2026, 11, 28));
    }
}
