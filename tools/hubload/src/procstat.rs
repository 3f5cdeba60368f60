//! Server process figures from `/proc`: CPU time (`utime + stime` from `/proc/PID/stat`)
//! and resident memory (`VmRSS` from `/proc/PID/status`).

use anyhow::Context;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// User + system CPU time, microseconds (clock-tick resolution, usually 10 ms).
    pub cpu_us: u64,
    pub rss_kb: u64,
}

pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the server running?)"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))?;
    let rss_kb = rss_kb(&status).with_context(|| format!("parsing /proc/{pid}/status"))?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(Sample {
        cpu_us: ticks * 1_000_000 / per_second,
        rss_kb,
    })
}

/// `utime + stime` in clock ticks: fields 14 and 15, counted after the `(comm)` field,
/// which may itself contain spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // Field 3 (state) is the first after comm; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_ticks_even_with_odd_process_names() {
        let stat = "4242 (gong kai) (x)) S 1 4242 4242 0 -1 4194560 9 0 0 0 \
                    250 75 0 0 20 0 9 0 1234 5678 90 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_resident_memory() {
        let status = "Name:\tgongkai\nVmPeak:\t  99 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(rss_kb(status), Some(123_456));
        assert_eq!(rss_kb("Name: x\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = sample(std::process::id()).expect("own /proc entry");
        assert!(me.rss_kb > 0);
    }
}
