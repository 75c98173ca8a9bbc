//! Slurm host list expressions: `node[001-004,007]`, as `scontrol show hostnames` expands
//! them and `scontrol show hostlist` compresses them (Slurm's hostlist syntax: a prefix, then
//! a bracketed list of numbers and ranges whose width, zero padding included, is kept).

/// Names a host list may expand to (an assumption: far beyond any cluster).
pub const MAX_NAMES: usize = 10_000_000;

/// Expands a host list ("node[001-003],login1") into names, in order.
pub fn expand(list: &str) -> Result<Vec<String>, String> {
    expand_at_most(list, MAX_NAMES)
}

/// [`expand`], refusing a list of more than `max` names before it builds them all (several
/// bracket groups multiply: `n[0-999999][0-999999]` is 10^12 names).
pub fn expand_at_most(list: &str, max: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(list, &mut out, max)?;
    Ok(out)
}

fn expand_into(list: &str, out: &mut Vec<String>, max: usize) -> Result<(), String> {
    let too_many = || format!("host list expands to more than {max} names");
    for item in split_top(list)? {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some(open) = item.find('[') else {
            if item.contains(']') {
                return Err(format!("{item:?}: ']' without '['"));
            }
            if out.len() >= max {
                return Err(too_many());
            }
            out.push(item.to_string());
            continue;
        };
        let close = item[open..].find(']').map(|c| c + open).ok_or_else(|| format!("{item:?}: '[' without ']'"))?;
        let (prefix, inner, suffix) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
        if suffix.contains('[') {
            // Several bracket groups: expand the rest for each value of the first.
            for v in ranges(item, inner, max)? {
                expand_into(&format!("{prefix}{v}{suffix}"), out, max)?;
            }
            continue;
        }
        if suffix.contains(']') {
            return Err(format!("{item:?}: ']' without '['"));
        }
        for v in ranges(item, inner, max)? {
            if out.len() >= max {
                return Err(too_many());
            }
            out.push(format!("{prefix}{v}{suffix}"));
        }
    }
    Ok(())
}

/// How many names a host list holds, without building them (each item's bracket groups
/// multiply; saturating). Malformed lists are left to [`expand`] to name.
pub fn count(list: &str) -> Result<u128, String> {
    let mut n: u128 = 0;
    for item in split_top(list)? {
        let mut item = item.trim();
        if item.is_empty() {
            continue;
        }
        let mut k: u128 = 1;
        while let (Some(open), Some(close)) = (item.find('['), item.find(']')) {
            if close < open {
                break;
            }
            let mut g: u128 = 0;
            for part in item[open + 1..close].split(',') {
                let (a, b) = part.trim().split_once('-').unwrap_or((part.trim(), part.trim()));
                if let (Ok(lo), Ok(hi)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    g = g.saturating_add(u128::from(hi.saturating_sub(lo)) + 1);
                }
            }
            k = k.saturating_mul(g);
            item = &item[close + 1..];
        }
        n = n.saturating_add(k);
    }
    Ok(n)
}

/// Splits on commas outside brackets.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("{s:?}: unbalanced or nested brackets"));
        }
    }
    if depth != 0 {
        return Err(format!("{s:?}: '[' without ']'"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// The values of one bracket ("001-003,7"), each with its written width: at most `max`.
fn ranges(item: &str, inner: &str, max: usize) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let bad = || format!("{item:?}: expected numbers or ranges such as 001-004 inside [], got {part:?}");
        if a.is_empty()
            || !a.bytes().all(|c| c.is_ascii_digit())
            || b.is_empty()
            || !b.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let lo: u64 = a.parse().map_err(|_| bad())?;
        let hi: u64 = b.parse().map_err(|_| bad())?;
        if hi < lo {
            return Err(format!("{item:?}: range {part:?} runs backwards"));
        }
        if hi - lo > 1_000_000 {
            return Err(format!("{item:?}: range {part:?} is longer than a million hosts"));
        }
        if (v.len() as u64).saturating_add(hi - lo + 1) > max as u64 {
            return Err(format!("{item:?}: [{inner}] expands to more than {max} names"));
        }
        let width = if a.starts_with('0') && a.len() > 1 { a.len() } else { 0 };
        for x in lo..=hi {
            v.push(format!("{x:0width$}"));
        }
    }
    Ok(v)
}

/// Compresses names into a host list: names sharing a prefix and a number of the same
/// width become `prefix[a-b,c]`; others are listed as they are. Order is kept per prefix.
pub fn compress(names: &[String]) -> String {
    // (prefix, width, numbers) runs in first-seen order of their prefix and width.
    let mut groups: Vec<(String, usize, Vec<u64>)> = Vec::new();
    let mut plain: Vec<(usize, String)> = Vec::new();
    let mut order: Vec<(bool, usize)> = Vec::new();
    let split = |n: &str| -> (String, String) {
        let digits = n.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (p, d) = n.split_at(n.len() - digits);
        (p.to_string(), d.to_string())
    };
    // Widths written zero-padded, per prefix: unpadded numbers of that width join them.
    let mut padded_widths: Vec<(String, usize)> = Vec::new();
    for n in names {
        let (p, d) = split(n);
        if d.len() > 1 && d.starts_with('0') && !padded_widths.contains(&(p.clone(), d.len())) {
            padded_widths.push((p, d.len()));
        }
    }
    for n in names {
        let digits = n.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (p, d) = n.split_at(n.len() - digits);
        match d.parse::<u64>() {
            Ok(x) if !d.is_empty() => {
                // Zero-padded numbers group by their width; an unpadded number joins a padded
                // group of its own length (node099, node100 -> node[099-100]).
                let padded = padded_widths.iter().any(|(q, w)| q == p && *w == d.len());
                let width = if padded { d.len() } else { 0 };
                if let Some(i) = groups.iter().position(|g| g.0 == p && g.1 == width) {
                    groups[i].2.push(x);
                } else {
                    groups.push((p.to_string(), width, vec![x]));
                    order.push((true, groups.len() - 1));
                }
            }
            _ => {
                plain.push((order.len(), n.clone()));
                order.push((false, plain.len() - 1));
            }
        }
    }
    let mut out = Vec::new();
    for (is_group, i) in order {
        if !is_group {
            out.push(plain[i].1.clone());
            continue;
        }
        let (p, w, xs) = &groups[i];
        let mut xs = xs.clone();
        xs.sort_unstable();
        xs.dedup();
        if xs.len() == 1 {
            out.push(format!("{p}{:0w$}", xs[0]));
            continue;
        }
        let mut parts = Vec::new();
        let mut k = 0;
        while k < xs.len() {
            let mut j = k;
            while j + 1 < xs.len() && xs[j + 1] == xs[j] + 1 {
                j += 1;
            }
            parts.push(if j == k { format!("{:0w$}", xs[k]) } else { format!("{:0w$}-{:0w$}", xs[k], xs[j]) });
            k = j + 1;
        }
        out.push(format!("{p}[{}]", parts.join(",")));
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expands_ranges_lists_and_padding() {
        assert_eq!(expand("node[001-003,007]").unwrap(), names(&["node001", "node002", "node003", "node007"]));
        assert_eq!(expand("a1,b[8-10]").unwrap(), names(&["a1", "b8", "b9", "b10"]));
        assert_eq!(expand("r[1-2]-n[01-02]").unwrap(), names(&["r1-n01", "r1-n02", "r2-n01", "r2-n02"]));
    }

    #[test]
    fn compress_round_trips() {
        let n = names(&["node001", "node002", "node003", "node007", "login", "node010"]);
        let c = compress(&n);
        assert_eq!(c, "node[001-003,007,010],login");
        let wide = names(&["node098", "node099", "node100", "node101"]);
        assert_eq!(compress(&wide), "node[098-101]");
        let late = names(&["node105", "node106", "node020", "node021"]);
        assert_eq!(compress(&late), "node[020-021,105-106]");
        assert_eq!(expand("node[098-101]").unwrap(), wide);
        let mut back = expand(&c).unwrap();
        let mut want = n.clone();
        back.sort();
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        assert!(expand("node[1-").unwrap_err().contains("'[' without ']'"));
        assert!(expand("node[5-2]").unwrap_err().contains("runs backwards"));
        assert!(expand("node[a-b]").unwrap_err().contains("expected numbers"));
        assert!(expand("node]1[").unwrap_err().contains("unbalanced"));
    }

    /// Lists are counted without being built, and never built past their limit: two bracket
    /// groups of a million are 10^12 names (this used to take all memory).
    #[test]
    fn huge_lists_are_counted_not_built() {
        use super::{count, expand_at_most};
        assert_eq!(count("n[0-999999][0-999999]").unwrap(), 1_000_000_000_000);
        assert_eq!(count("a1,b[8-10],r[1-2]-n[01-02]").unwrap(), 1 + 3 + 4);
        let e = expand_at_most("n[0-999999][0-999999]", 3).unwrap_err();
        assert!(e.contains("expands to more than 3 names"), "{e}");
        let e = expand_at_most("a,b,c,d", 3).unwrap_err();
        assert!(e.contains("more than 3 names"), "{e}");
        let e = expand_at_most("n[0-1,0-1]", 3).unwrap_err();
        assert!(e.contains("more than 3 names"), "{e}");
        assert_eq!(expand_at_most("n[1-3]", 3).unwrap().len(), 3);
        let e = expand(&format!("n[{}]", ["0-1000000"; 11].join(","))).unwrap_err();
        assert!(e.contains("more than 10000000 names"), "{e}");
    }
}
