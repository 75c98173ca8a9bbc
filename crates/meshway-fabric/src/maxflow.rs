//! Maximum flow (Dinic's algorithm, iterative DFS so long chains cannot overflow the stack).

/// A flow network with integer capacities.
#[derive(Debug, Clone, Default)]
pub struct FlowNet {
    head: Vec<u32>,
    // Arcs: to, next, cap. Arc i and i^1 are each other's residual.
    to: Vec<u32>,
    next: Vec<u32>,
    cap: Vec<u64>,
}

const NONE: u32 = u32::MAX;

impl FlowNet {
    pub fn new(nodes: usize) -> FlowNet {
        FlowNet { head: vec![NONE; nodes], ..Default::default() }
    }

    pub fn add_node(&mut self) -> usize {
        self.head.push(NONE);
        self.head.len() - 1
    }

    fn arc(&mut self, u: usize, v: usize, cap: u64) {
        self.to.push(v as u32);
        self.next.push(self.head[u]);
        self.cap.push(cap);
        self.head[u] = (self.to.len() - 1) as u32;
    }

    /// Adds an edge with capacity `uv` from u to v and `vu` from v to u (a full-duplex link
    /// of rate r is `add(u, v, r, r)`).
    pub fn add(&mut self, u: usize, v: usize, uv: u64, vu: u64) {
        self.arc(u, v, uv);
        self.arc(v, u, vu);
    }

    /// The maximum flow from `s` to `t`. Consumes the capacities (call once).
    pub fn max_flow(&mut self, s: usize, t: usize) -> u64 {
        let n = self.head.len();
        let mut total: u64 = 0;
        let mut level = vec![u32::MAX; n];
        let mut it = vec![NONE; n];
        let mut queue = Vec::with_capacity(n);
        loop {
            // BFS levels.
            level.iter_mut().for_each(|l| *l = u32::MAX);
            level[s] = 0;
            queue.clear();
            queue.push(s as u32);
            let mut qi = 0;
            while qi < queue.len() {
                let u = queue[qi] as usize;
                qi += 1;
                let mut a = self.head[u];
                while a != NONE {
                    let v = self.to[a as usize] as usize;
                    if self.cap[a as usize] > 0 && level[v] == u32::MAX {
                        level[v] = level[u] + 1;
                        queue.push(v as u32);
                    }
                    a = self.next[a as usize];
                }
            }
            if level[t] == u32::MAX {
                return total;
            }
            it.copy_from_slice(&self.head);
            // Blocking flow with an explicit stack of arcs.
            loop {
                let pushed = self.augment(s, t, &level, &mut it);
                if pushed == 0 {
                    break;
                }
                total = total.saturating_add(pushed);
            }
        }
    }

    /// Finds one augmenting path in the level graph and pushes its bottleneck.
    fn augment(&mut self, s: usize, t: usize, level: &[u32], it: &mut [u32]) -> u64 {
        let mut path: Vec<u32> = Vec::new();
        let mut u = s;
        loop {
            if u == t {
                let f = path.iter().map(|&a| self.cap[a as usize]).min().unwrap_or(0);
                for &a in &path {
                    self.cap[a as usize] -= f;
                    self.cap[(a ^ 1) as usize] = self.cap[(a ^ 1) as usize].saturating_add(f);
                }
                return f;
            }
            let mut advanced = false;
            while it[u] != NONE {
                let a = it[u] as usize;
                let v = self.to[a] as usize;
                if self.cap[a] > 0 && level[v] == level[u] + 1 {
                    path.push(a as u32);
                    u = v;
                    advanced = true;
                    break;
                }
                it[u] = self.next[a];
            }
            if !advanced {
                // Dead end: retreat and skip the arc that led here.
                match path.pop() {
                    None => return 0,
                    Some(a) => {
                        u = self.to[(a ^ 1) as usize] as usize;
                        it[u] = self.next[it[u] as usize];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_example() {
        // CLRS figure 26.1: max flow 23.
        let mut n = FlowNet::new(6);
        for (u, v, c) in
            [(0, 1, 16), (0, 2, 13), (1, 3, 12), (2, 1, 4), (2, 4, 14), (3, 2, 9), (3, 5, 20), (4, 3, 7), (4, 5, 4)]
        {
            n.add(u, v, c, 0);
        }
        assert_eq!(n.max_flow(0, 5), 23);
    }

    #[test]
    fn undirected_parallel_and_chain() {
        let mut n = FlowNet::new(3);
        n.add(0, 1, 5, 5);
        n.add(0, 1, 5, 5);
        n.add(1, 2, 7, 7);
        assert_eq!(n.max_flow(0, 2), 7);
        // A 200k-node chain must not overflow the stack.
        let len = 200_000;
        let mut c = FlowNet::new(len);
        for i in 0..len - 1 {
            c.add(i, i + 1, 3, 3);
        }
        assert_eq!(c.max_flow(0, len - 1), 3);
    }
}
