//! Window boundaries, pure. Windows are aligned to the wall clock of the workspace's time zone —
//! every hour on the hour, 00/06/12/18, 00/12, midnight — and returned as UTC instants.
//!
//! A boundary is a local time on that grid. Where the grid time does not exist (clocks jump
//! forward over it) the boundary is the first instant after the jump; where it exists twice
//! (clocks fall back) it is the earlier one. So across a DST change a window is shorter or longer,
//! and never skipped, doubled or empty.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::domain::Granularity;

/// Hours per window, or `None` for the granularities without clock windows (`none`, and
/// `conversation`, whose bundles close when the conversation ends).
pub fn hours(granularity: Granularity) -> Option<u32> {
    match granularity {
        Granularity::None | Granularity::Conversation => None,
        Granularity::Hours1 => Some(1),
        Granularity::Hours6 => Some(6),
        Granularity::Hours12 => Some(12),
        Granularity::Hours24 => Some(24),
    }
}

/// A window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The instant a local wall-clock time names: the earlier one when it exists twice, the first
/// instant after the gap when it does not exist.
fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.to_utc(),
        LocalResult::Ambiguous(a, b) => a.to_utc().min(b.to_utc()),
        LocalResult::None => {
            // Gaps are whole minutes long (30 min on Lord Howe, usually an hour), at most a day.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    // The first existing minute is the gap's end; local times in a gap all map to it.
                    return t.to_utc();
                }
            }
            unreachable!("no time zone skips a whole day")
        }
    }
}

/// The grid time at or before `local`, for windows of `hours` hours.
fn floor(local: NaiveDateTime, hours: u32) -> NaiveDateTime {
    let hour = local.hour() - local.hour() % hours;
    local.date().and_hms_opt(hour, 0, 0).expect("a whole hour of a valid date is a valid time")
}

/// The window of `granularity` in time zone `tz` that contains the instant `t`.
///
/// # Panics
/// For granularity `none`, which has no windows.
pub fn containing(t: DateTime<Utc>, granularity: Granularity, tz: Tz) -> Window {
    let hours = hours(granularity).expect("only the clock granularities have windows");
    let step = Duration::hours(i64::from(hours));
    let mut grid = floor(t.with_timezone(&tz).naive_local(), hours);
    let mut start = resolve(tz, grid);
    // An ambiguous or skipped grid time can resolve after `t`; step back to one at or before it.
    while start > t {
        grid -= step;
        start = resolve(tz, grid);
    }
    loop {
        let mut next = grid + step;
        let mut end = resolve(tz, next);
        // Two grid times can name one instant (the first after a gap): that window would be empty.
        while end <= start {
            next += step;
            end = resolve(tz, next);
        }
        if end > t {
            return Window { start, end };
        }
        grid = next;
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    /// Walks minute by minute over `[from, to)` and checks the windows tile time: every instant is
    /// in its window, consecutive windows meet, none is empty. Returns the distinct windows.
    fn tiling(from: &str, to: &str, granularity: Granularity, zone: &str) -> Vec<Window> {
        let (mut t, to) = (utc(from), utc(to));
        let mut windows: Vec<Window> = Vec::new();
        while t < to {
            let w = containing(t, granularity, tz(zone));
            assert!(w.start <= t && t < w.end, "{t} not in {w:?}");
            assert!(w.start < w.end, "empty window {w:?}");
            match windows.last() {
                Some(last) if *last == w => {}
                Some(last) => {
                    assert_eq!(last.end, w.start, "windows must meet: {last:?} then {w:?}");
                    windows.push(w);
                }
                None => windows.push(w),
            }
            t += Duration::minutes(1);
        }
        windows
    }

    fn lengths(windows: &[Window]) -> Vec<i64> {
        windows.iter().map(|w| (w.end - w.start).num_minutes()).collect()
    }

    fn local_starts(windows: &[Window], zone: &str) -> Vec<String> {
        windows.iter().map(|w| w.start.with_timezone(&tz(zone)).format("%H:%M").to_string()).collect()
    }

    #[test]
    fn utc_windows_sit_on_the_hour_grid() {
        let t = utc("2024-05-01T13:37:00Z");
        let w = |g| containing(t, g, chrono_tz::UTC);
        assert_eq!(
            w(Granularity::Hours1),
            Window { start: utc("2024-05-01T13:00:00Z"), end: utc("2024-05-01T14:00:00Z") }
        );
        assert_eq!(
            w(Granularity::Hours6),
            Window { start: utc("2024-05-01T12:00:00Z"), end: utc("2024-05-01T18:00:00Z") }
        );
        assert_eq!(
            w(Granularity::Hours12),
            Window { start: utc("2024-05-01T12:00:00Z"), end: utc("2024-05-02T00:00:00Z") }
        );
        assert_eq!(
            w(Granularity::Hours24),
            Window { start: utc("2024-05-01T00:00:00Z"), end: utc("2024-05-02T00:00:00Z") }
        );
        // A boundary instant opens the next window.
        let at = containing(utc("2024-05-01T14:00:00Z"), Granularity::Hours1, chrono_tz::UTC);
        assert_eq!(at.start, utc("2024-05-01T14:00:00Z"));
    }

    #[test]
    fn berlin_spring_forward_shortens_windows_without_skipping() {
        // 2024-03-31: 02:00 CET jumps to 03:00 CEST (01:00Z).
        let day = ("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z");
        let hourly = tiling(day.0, day.1, Granularity::Hours1, "Europe/Berlin");
        assert_eq!(hourly.len(), 23, "a 23-hour day has 23 hourly windows");
        assert!(lengths(&hourly).iter().all(|m| *m == 60));
        assert_eq!(local_starts(&hourly, "Europe/Berlin")[..4], ["00:00", "01:00", "03:00", "04:00"]);
        let six = tiling(day.0, day.1, Granularity::Hours6, "Europe/Berlin");
        assert_eq!(lengths(&six), [300, 360, 360, 360], "the window across the jump is 5 h");
        let daily = tiling(day.0, day.1, Granularity::Hours24, "Europe/Berlin");
        assert_eq!(lengths(&daily), [23 * 60]);
    }

    #[test]
    fn berlin_fall_back_lengthens_windows_without_doubling() {
        // 2024-10-27: 03:00 CEST falls back to 02:00 CET (01:00Z).
        let day = ("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z");
        let hourly = tiling(day.0, day.1, Granularity::Hours1, "Europe/Berlin");
        assert_eq!(hourly.len(), 24, "02:00 opens one window, not two");
        assert_eq!(lengths(&hourly)[2], 120, "the 02:00 window spans both 02:00 hours");
        let twelve = tiling(day.0, day.1, Granularity::Hours12, "Europe/Berlin");
        assert_eq!(lengths(&twelve), [13 * 60, 12 * 60]);
        let daily = tiling(day.0, day.1, Granularity::Hours24, "Europe/Berlin");
        assert_eq!(lengths(&daily), [25 * 60]);
    }

    #[test]
    fn new_york_both_changes() {
        // 2024-03-10 02:00 EST → 03:00 EDT; 2024-11-03 02:00 EDT → 01:00 EST.
        let spring =
            tiling("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z", Granularity::Hours1, "America/New_York");
        assert_eq!(spring.len(), 23);
        let spring6 =
            tiling("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z", Granularity::Hours6, "America/New_York");
        assert_eq!(lengths(&spring6), [300, 360, 360, 360]);
        let fall =
            tiling("2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z", Granularity::Hours1, "America/New_York");
        assert_eq!(fall.len(), 24);
        assert_eq!(lengths(&fall)[1], 120, "the 01:00 window spans both 01:00 hours");
        let daily =
            tiling("2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z", Granularity::Hours24, "America/New_York");
        assert_eq!(lengths(&daily), [25 * 60]);
    }

    #[test]
    fn half_and_quarter_hour_offsets() {
        // Kolkata is UTC+5:30 and Kathmandu UTC+5:45 all year: boundaries at :30 and :15 UTC.
        let w = containing(utc("2024-05-01T10:00:00Z"), Granularity::Hours1, tz("Asia/Kolkata"));
        assert_eq!((w.start, w.end), (utc("2024-05-01T09:30:00Z"), utc("2024-05-01T10:30:00Z")));
        let w = containing(utc("2024-05-01T10:00:00Z"), Granularity::Hours24, tz("Asia/Kathmandu"));
        assert_eq!((w.start, w.end), (utc("2024-04-30T18:15:00Z"), utc("2024-05-01T18:15:00Z")));
        let w = containing(utc("2024-05-01T10:00:00Z"), Granularity::Hours6, tz("Asia/Kathmandu"));
        assert_eq!((w.start, w.end), (utc("2024-05-01T06:15:00Z"), utc("2024-05-01T12:15:00Z")));
        let day =
            tiling("2024-05-01T00:00:00Z", "2024-05-03T00:00:00Z", Granularity::Hours1, "Asia/Kathmandu");
        assert!(lengths(&day).iter().all(|m| *m == 60));
    }

    #[test]
    fn lord_howe_half_hour_daylight_saving() {
        // Lord Howe: UTC+10:30, and UTC+11 in summer. 2024-04-07 02:00 falls back to 01:30;
        // 2024-10-06 02:00 jumps to 02:30.
        let fall = tiling(
            "2024-04-06T13:00:00Z",
            "2024-04-07T14:00:00Z",
            Granularity::Hours1,
            "Australia/Lord_Howe",
        );
        assert_eq!(lengths(&fall).iter().sum::<i64>() % 30, 0);
        assert!(lengths(&fall).contains(&90), "the 01:00 window runs 90 minutes: {:?}", lengths(&fall));
        let spring = tiling(
            "2024-10-05T13:30:00Z",
            "2024-10-06T14:00:00Z",
            Granularity::Hours1,
            "Australia/Lord_Howe",
        );
        assert!(
            lengths(&spring).contains(&30),
            "the 02:00 window is cut to 30 minutes: {:?}",
            lengths(&spring)
        );
        let daily = tiling(
            "2024-10-05T13:30:00Z",
            "2024-10-07T13:00:00Z",
            Granularity::Hours24,
            "Australia/Lord_Howe",
        );
        assert_eq!(lengths(&daily)[0], 24 * 60 - 30);
    }

    #[test]
    fn a_midnight_gap_moves_the_daily_boundary_to_the_first_existing_minute() {
        // America/Santiago skipped 00:00–01:00 on 2024-09-08.
        let w = containing(utc("2024-09-08T12:00:00Z"), Granularity::Hours24, tz("America/Santiago"));
        assert_eq!(w.start.with_timezone(&tz("America/Santiago")).format("%H:%M").to_string(), "01:00");
        assert_eq!(w.end - w.start, Duration::hours(23));
    }
}
