//! Sets of completion indexes in the interval notation of Job status (`1,3-5,7`).

use std::collections::BTreeSet;

/// Parses `1,3-5,7`; malformed parts and indexes not below `limit` are skipped.
pub(crate) fn parse(text: Option<&str>, limit: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim().parse::<i32>(), hi.trim().parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            out.extend((lo.max(0)..=hi.min(limit - 1)).filter(|i| *i < limit));
        }
    }
    out
}

/// Formats a set as `1,3-5,7` (`None` when empty, as the API leaves the field out).
pub(crate) fn format(set: &BTreeSet<i32>) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip_and_respect_the_limit() {
        let set = parse(Some("0,2-4,6,9-12"), 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 6, 9]);
        assert_eq!(format(&set).as_deref(), Some("0,2-4,6,9"));
        assert_eq!(format(&BTreeSet::new()), None);
        assert!(parse(Some("x,-"), 5).is_empty());
    }
}
