//! The `REPLICA_FAIL` test hook: which replica fails, and after how many batches. Read only in
//! builds with `test-hooks`; off unless the variable is set.

/// `Some(k)` when replica `replica` is to fail when handed a batch after `k` finished ones.
pub fn fail_after(replica: usize) -> Option<u64> {
    if !cfg!(feature = "test-hooks") {
        return None;
    }
    let rule = std::env::var(crate::env_vars::REPLICA_FAIL).ok()?;
    parse(&rule).filter(|(r, _)| *r == replica).map(|(_, k)| k)
}

/// `N:K` → (N, K).
fn parse(rule: &str) -> Option<(usize, u64)> {
    let (n, k) = rule.trim().split_once(':')?;
    Some((n.trim().parse().ok()?, k.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_parse() {
        assert_eq!(super::parse("1:3"), Some((1, 3)));
        assert_eq!(super::parse(" 0 : 0 "), Some((0, 0)));
        assert_eq!(super::parse("1"), None);
        assert_eq!(super::parse("a:1"), None);
    }
}
