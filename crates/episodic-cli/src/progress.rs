//! Progress on standard error: a bar on a terminal; on anything else (a log file, `nohup`, a
//! batch job) plain lines, flushed: one as soon as the work is known, one 2 s later, then at a
//! fixed interval (10 s, or `EPISODIC_PROGRESS_SECONDS`),
//! printed by a ticker thread so that they keep coming during a long evaluation too. Both
//! measure progress in work (steps weighted by their cost, and evaluations), so the ETA
//! holds when steps get dearer with every task, as GEM's do.

use std::io::IsTerminal as _;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use episodic::cost::human_duration;
use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between plain progress lines unless `EPISODIC_PROGRESS_SECONDS` says otherwise.
const DEFAULT_INTERVAL_SECONDS: f64 = 10.0;

/// The first plain line comes after this long (or the interval, if shorter).
const FIRST_LINE_AFTER: Duration = Duration::from_secs(2);

/// Where a run (or a suite) stands, shared with the ticker.
#[derive(Debug)]
struct Status {
    /// What is going on ("task 3/20, step 250/2000").
    message: String,
    /// Work done and the work of the whole, once known.
    work: u64,
    total: u64,
    /// When and at what work the current measurement started (for the ETA).
    since: Option<(Instant, u64)>,
    started: Instant,
    stopped: bool,
}

impl Status {
    /// "task 3/20, step 250/2000: 12% of the work, 1 min elapsed, about 7 min left".
    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut line = format!("{} ({} elapsed", self.message, human_duration(elapsed));
        if self.total > 0 {
            let percent = 100.0 * self.work as f64 / self.total as f64;
            line.push_str(&format!(", {percent:.0}% of the work"));
            if let Some(left) = self.seconds_left() {
                line.push_str(&format!(", about {} left", human_duration(left)));
            }
        }
        line.push(')');
        line
    }

    /// Remaining seconds at the rate measured since `since`.
    fn seconds_left(&self) -> Option<f64> {
        let (t0, w0) = self.since?;
        let done = self.work.checked_sub(w0).filter(|&d| d > 0)? as f64;
        let rate = done / t0.elapsed().as_secs_f64().max(1e-9);
        Some(self.total.saturating_sub(self.work) as f64 / rate)
    }
}

/// A progress display on standard error.
pub struct Reporter {
    bar: ProgressBar,
    status: Arc<(Mutex<Status>, Condvar)>,
    ticker: Option<JoinHandle<()>>,
}

impl Reporter {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let status = Arc::new((
            Mutex::new(Status {
                message: "starting".into(),
                work: 0,
                total: 0,
                since: None,
                started: Instant::now(),
                stopped: false,
            }),
            Condvar::new(),
        ));
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:32} {percent:>3}%  {msg}  (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            return Self {
                bar,
                status,
                ticker: None,
            };
        }
        let interval = std::env::var("EPISODIC_PROGRESS_SECONDS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(DEFAULT_INTERVAL_SECONDS);
        let shared = Arc::clone(&status);
        let ticker = std::thread::spawn(move || tick(&shared, Duration::from_secs_f64(interval)));
        Self {
            bar: ProgressBar::hidden(),
            status,
            ticker: Some(ticker),
        }
    }

    /// Prints `line` at once (above the bar on a terminal).
    pub fn say(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// The work of the whole, and the work already done (by earlier runs of a suite); the
    /// ETA is measured from the next update on (so a resumed run's earlier work does not
    /// count as done now).
    pub fn start(&self, total: u64, work: u64) {
        self.bar.set_length(total);
        self.bar.set_position(work);
        let mut s = lock(&self.status);
        s.total = total;
        s.work = work;
        s.since = None;
        if self.ticker.is_some() {
            // In a log, where the run stands right away, then at every tick.
            print_line(&s);
        }
    }

    /// Work done so far and what is going on.
    pub fn update(&self, work: u64, message: String) {
        let mut s = lock(&self.status);
        if s.since.is_none() {
            s.since = Some((Instant::now(), work));
            self.bar.reset_eta();
        }
        self.bar.set_position(work);
        self.bar.set_message(message.clone());
        s.work = work;
        s.message = message;
    }

    /// What is going on, the work unchanged.
    pub fn message(&self, message: String) {
        self.bar.set_message(message.clone());
        lock(&self.status).message = message;
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        lock(&self.status).stopped = true;
        self.status.1.notify_all();
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

fn lock(status: &(Mutex<Status>, Condvar)) -> std::sync::MutexGuard<'_, Status> {
    status
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Prints the status every `interval` until stopped.
fn tick(status: &(Mutex<Status>, Condvar), interval: Duration) {
    let mut guard = lock(status);
    // The first line comes soon, so that even a short run shows it is moving.
    let mut wait = interval.min(FIRST_LINE_AFTER);
    loop {
        let deadline = Instant::now() + wait;
        wait = interval;
        while !guard.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = status
                .1
                .wait_timeout(guard, left)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
        if guard.stopped {
            return;
        }
        print_line(&guard);
    }
}

/// Writes `status` as a `progress:` line on stderr, flushed.
fn print_line(status: &Status) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "progress: {}", status.line());
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_the_share_of_work_and_time_left() {
        let mut s = Status {
            message: "task 2/4, step 5/10".into(),
            work: 50,
            total: 200,
            since: Some((Instant::now() - Duration::from_secs(10), 0)),
            started: Instant::now() - Duration::from_secs(12),
            stopped: false,
        };
        let line = s.line();
        assert!(
            line.starts_with("task 2/4, step 5/10 (12 s elapsed, 25% of the work, about 30 s left"),
            "{line}"
        );
        s.total = 0;
        assert_eq!(s.line(), "task 2/4, step 5/10 (12 s elapsed)");
    }
}
