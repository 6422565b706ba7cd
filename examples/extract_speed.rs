//! Extraction speed of `deploy::extract` on a 100 MiB incompressible release
//! (10 files of 10 MiB), plain tar and tar.gz, median [min-max] of 3 runs.
//! Extraction only (no upload, no fsync): the deploy bench measures the
//! whole flow over HTTP.
//!
//! ```text
//! cargo run --release --example extract_speed [-- DIR]
//! ```

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use exeio::deploy::{Limits, extract};

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("exeio-extract-speed-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let tar = build_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    for (label, bytes) in [("tar", &tar), ("tar.gz", &gz)] {
        let archive = base.join(format!("release.{label}"));
        std::fs::write(&archive, bytes).unwrap();
        let mut rates = Vec::new();
        for run in 0..3 {
            let into = base.join(format!("out-{label}-{run}"));
            std::fs::create_dir(&into).unwrap();
            let limits = Limits {
                max_bytes: 2 << 30,
                max_entries: 100_000,
            };
            let t = Instant::now();
            let got = extract(&archive, &into, &limits, None).unwrap();
            let secs = t.elapsed().as_secs_f64();
            rates.push(got.bytes as f64 / secs / 1e6);
            std::fs::remove_dir_all(&into).unwrap();
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "extract 100 MiB {label:6} ({:.1} MB archive): {:.0} MB/s [{:.0}-{:.0}]",
            bytes.len() as f64 / 1e6,
            rates[1],
            rates[0],
            rates[2]
        );
    }
    remove(&base);
}

fn build_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..10 {
        let mut data = vec![0u8; 10 << 20];
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("data/part{i}.bin"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
