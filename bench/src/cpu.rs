//! CPU time of another process, from `/proc/PID/stat`: what one request costs the server
//! under test, a number that other work on a shared machine disturbs far less than latency.

use std::time::Duration;

/// Linux reports `utime` and `stime` in USER_HZ ticks, which is 100 per second on every
/// architecture the kernel exposes to user space through /proc.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system time the process (all its threads) has used so far.
pub fn used(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = ticks(&text)?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// `utime + stime` from a stat line. The command name in parentheses may hold spaces and
/// parentheses itself, so fields are counted from the last `)`.
fn ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_the_command_name() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "42 (tollgate) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3",
                Some(300),
            ),
            (
                "7 (tollgate proxy) (x)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 2 3",
                Some(7),
            ),
            ("42 (short) S 1 2", None),
            ("no parenthesis", None),
            ("1 (x) S 1 1 1 0 -1 0 0 0 0 0 a b", None),
        ];
        for (line, expected) in cases {
            assert_eq!(ticks(line), *expected, "{line}");
        }
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin: u64 = (0..2_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(used(std::process::id()).is_some());
        assert!(used(u32::MAX).is_none());
    }
}
