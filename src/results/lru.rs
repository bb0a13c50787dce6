//! A small least-recently-used map bounded by a total weight: the engine keeps recent result
//! tables and computed row orders in it, each weighed in bytes.

#[derive(Debug)]
pub struct Lru<K, V> {
    entries: Vec<(K, V)>,
    limit: usize,
    weigh: fn(&V) -> usize,
}

impl<K: PartialEq, V: Clone> Lru<K, V> {
    /// Holds entries while their weights add up to at most `limit` (always the newest one).
    pub fn new(limit: usize, weigh: fn(&V) -> usize) -> Self {
        Lru { entries: Vec::new(), limit, weigh }
    }

    /// The entry under `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        let e = self.entries.remove(i);
        let v = e.1.clone();
        self.entries.push(e);
        Some(v)
    }

    /// Drops the entry under `key`, if there is one.
    pub fn remove(&mut self, key: &K) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// Puts `v` under `key`, evicting the least recently used entries over the limit.
    pub fn put(&mut self, key: K, v: V) {
        self.entries.retain(|(k, _)| k != &key);
        self.entries.push((key, v));
        let mut total: usize = self.entries.iter().map(|(_, v)| (self.weigh)(v)).sum();
        while total > self.limit && self.entries.len() > 1 {
            let (_, old) = self.entries.remove(0);
            total -= (self.weigh)(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_over_the_limit() {
        let mut l: Lru<&str, usize> = Lru::new(10, |v| *v);
        l.put("a", 4);
        l.put("b", 4);
        assert_eq!(l.get(&"a"), Some(4));
        l.put("c", 4);
        assert_eq!(l.get(&"b"), None);
        assert_eq!(l.get(&"a"), Some(4));
        l.put("huge", 50);
        assert_eq!(l.get(&"huge"), Some(50), "the newest entry stays even over the limit");
        assert_eq!(l.get(&"a"), None);
    }
}
