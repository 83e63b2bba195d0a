//! `selfbuild report` pages rendered by a real headless Chromium (Debian's `chromium`): the
//! screenshot of a promoted and of a rolled-back demo improvement shows the canary and stable
//! series drawn, in the chart region and in quantity; the page of an improvement whose canary
//! never ran shows neither colour (and is not blank). Screenshots are kept under
//! `$CARGO_TARGET_TMPDIR/report-screenshots/` for people to look at.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use selfbuild_local::demo::{DemoOptions, run_scenario};
use selfbuild_local::report::{CANARY_RGB, STABLE_RGB};

const INSTALL: &str = "apt-get update && apt-get install -y chromium   (Debian, as root; \
                       else with sudo), or set CHROMIUM to the browser's path";
/// The browser window: the page's column of charts is 1000 px wide, centred.
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 2400;

/// The browser: `$CHROMIUM`, else `chromium` or `chromium-browser` on PATH; never skipped.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "error[MissingTool]: chromium is not installed; this test renders the report pages in \
         it\n  hint: {INSTALL}"
    );
}

/// Screenshots `page` into `png` with a fresh profile; fails after 90 s.
fn screenshot(page: &Path, png: &Path, profile: &Path) {
    let browser = chromium();
    let url = format!("file://{}", page.canonicalize().expect("page").display());
    let mut child = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={WIDTH},{HEIGHT}"),
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}\n  hint: {INSTALL}", browser.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!(
                "{} took more than 90 s to screenshot {url}",
                browser.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    assert!(
        status.success(),
        "{} failed ({status}): {stderr}",
        browser.display()
    );
    assert!(png.is_file(), "no screenshot of {url}: {stderr}");
}

/// A decoded screenshot: RGB(A) rows.
struct Image {
    width: usize,
    height: usize,
    channels: usize,
    pixels: Vec<u8>,
}

impl Image {
    fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).expect("screenshot");
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit screenshot");
        pixels.truncate(info.buffer_size());
        Self {
            width: info.width as usize,
            height: info.height as usize,
            channels: info.color_type.samples(),
            pixels,
        }
    }

    /// The positions of the pixels within 8 of `rgb` on every channel.
    fn find(&self, rgb: [u8; 3]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for y in 0..self.height {
            for x in 0..self.width {
                let at = (y * self.width + x) * self.channels;
                let px = &self.pixels[at..at + 3];
                if px.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 8) {
                    found.push((x, y));
                }
            }
        }
        found
    }

    /// The sizes of the 8-connected blobs of `pixels`, largest first.
    fn blobs(&self, pixels: &[(usize, usize)]) -> Vec<usize> {
        let mut mask = vec![false; self.width * self.height];
        for (x, y) in pixels {
            mask[y * self.width + x] = true;
        }
        let mut sizes = Vec::new();
        for start in 0..mask.len() {
            if !mask[start] {
                continue;
            }
            mask[start] = false;
            let (mut size, mut stack) = (0, vec![start]);
            while let Some(at) = stack.pop() {
                size += 1;
                let (x, y) = ((at % self.width) as isize, (at / self.width) as isize);
                for (dx, dy) in [
                    (-1, -1),
                    (0, -1),
                    (1, -1),
                    (-1, 0),
                    (1, 0),
                    (-1, 1),
                    (0, 1),
                    (1, 1),
                ] {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= self.width as isize || ny >= self.height as isize {
                        continue;
                    }
                    let next = ny as usize * self.width + nx as usize;
                    if mask[next] {
                        mask[next] = false;
                        stack.push(next);
                    }
                }
            }
            sizes.push(size);
        }
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes
    }

    /// Pixels that are not near white: the page drew something.
    fn inked(&self) -> usize {
        self.pixels
            .chunks(self.channels)
            .filter(|px| px[..3].iter().any(|c| *c < 200))
            .count()
    }
}

/// Runs a bundled scenario into `dir` and returns its outcome and the first improvement's page.
async fn report_of(scenario: &str, dir: &Path) -> (String, PathBuf) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/scenarios")
        .join(format!("{scenario}.json"));
    let options = DemoOptions {
        data_dir: dir.to_path_buf(),
        seed_offset: 0,
    };
    let row = run_scenario(&file, &options, Box::new(std::io::sink()))
        .await
        .unwrap_or_else(|e| panic!("{scenario}: {e}"));
    assert!(row.passed, "{scenario}: {:?}", row.failures);
    // Relative to the demo's data directory.
    let page = dir.join(
        row.reports
            .first()
            .unwrap_or_else(|| panic!("{scenario}: no report")),
    );
    (row.outcome, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_charts_are_drawn_in_a_real_browser() {
    let browser = chromium();
    let dir = tempfile::tempdir().expect("temp dir");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let cases = [
        ("timeouts", "promoted", true),
        ("memory-cut-rolled-back", "rolled_back", true),
        ("code-fix-leaks-key-blocked", "rejected", false),
    ];
    for (scenario, outcome, canary_ran) in cases {
        let (ended, page) = report_of(scenario, dir.path()).await;
        assert_eq!(ended, outcome, "{scenario}");
        let png = shots.join(format!("{scenario}.png"));
        let _ = std::fs::remove_file(&png);
        screenshot(&page, &png, &dir.path().join(format!("profile-{scenario}")));
        let image = Image::read(&png);
        assert_eq!(
            (image.width, image.height),
            (WIDTH as usize, HEIGHT as usize)
        );
        let stable = image.find(STABLE_RGB);
        let canary = image.find(CANARY_RGB);
        if !canary_ran {
            assert_eq!(
                (stable.len(), canary.len()),
                (0, 0),
                "{scenario}: {}",
                png.display()
            );
            assert!(
                image.inked() > 5_000,
                "{scenario}: a blank page ({})",
                png.display()
            );
            continue;
        }
        // A point (5 px radius, about 78 px) or a line through points makes a blob of 60 px or
        // more; a legend swatch (22 × 2 px) does not. Each series must show in at least three
        // charts (the rate charts), in the charts' column (the 960 px SVGs centred in the
        // window), over more than one chart's height.
        for (name, found) in [("stable", &stable), ("canary", &canary)] {
            let drawn: Vec<usize> = image
                .blobs(found)
                .into_iter()
                .filter(|n| *n >= 60)
                .collect();
            assert!(
                drawn.len() >= 3,
                "{scenario}: {name}: blobs of {drawn:?} px of {} pixels ({}, {})",
                found.len(),
                png.display(),
                browser.display()
            );
            eprintln!(
                "{scenario}: {name}: {} pixels, {} blobs of 60 px or more",
                found.len(),
                drawn.len()
            );
            let (xs, ys): (Vec<usize>, Vec<usize>) = found.iter().copied().unzip();
            let (left, right) = (xs.iter().min().unwrap(), xs.iter().max().unwrap());
            let (top, bottom) = (ys.iter().min().unwrap(), ys.iter().max().unwrap());
            assert!(
                *left >= 100 && *right <= 1100,
                "{scenario}: {name} pixels at x {left}–{right} ({})",
                png.display()
            );
            assert!(
                bottom - top > 600,
                "{scenario}: {name} pixels only at y {top}–{bottom} ({})",
                png.display()
            );
        }
    }
    eprintln!("screenshots in {}", shots.display());
}
