//! The `SHARD_CAPACITY` and `SHARD_OOM` test hooks: a capacity per device in place of its free
//! memory, and a device whose shard fails to load. Read only in builds with `test-hooks`; off
//! unless the variable is set.

/// The capacities the hook gives the devices of the list, when it is set (and well formed).
pub fn capacities(devices: usize) -> Option<Vec<u64>> {
    if !cfg!(feature = "test-hooks") {
        return None;
    }
    let rule = std::env::var(crate::env_vars::SHARD_CAPACITY).ok()?;
    parse_capacities(&rule).filter(|c| c.len() == devices)
}

/// Whether the hook makes the shard of device `index` of the list fail as out of memory.
pub fn out_of_memory(index: usize) -> bool {
    if !cfg!(feature = "test-hooks") {
        return false;
    }
    std::env::var(crate::env_vars::SHARD_OOM)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        == Some(index)
}

/// `A,B,…` → [A, B, …] bytes.
fn parse_capacities(rule: &str) -> Option<Vec<u64>> {
    rule.split(',').map(|c| c.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn capacities_parse() {
        assert_eq!(super::parse_capacities("10, 20"), Some(vec![10, 20]));
        assert_eq!(super::parse_capacities("7"), Some(vec![7]));
        assert_eq!(super::parse_capacities("10,x"), None);
        assert_eq!(super::parse_capacities(""), None);
    }
}
