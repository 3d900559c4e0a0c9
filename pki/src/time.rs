//! Wall-clock helpers: certificates count in Unix seconds, logs in RFC 3339.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (negative before it, saturating).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The instant `s` seconds after (or before, if negative) the Unix epoch.
pub fn from_unix(s: i64) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + Duration::from_secs(s.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
    }
}

/// RFC 3339 time, seconds precision.
pub fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip() {
        for s in [0, 1, -1, 1_700_000_000, -86_400] {
            assert_eq!(unix_seconds(from_unix(s)), s);
        }
        assert_eq!(fmt_time(from_unix(0)), "1970-01-01T00:00:00Z");
    }
}
