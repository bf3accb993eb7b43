//! Deterministic synthetic ColQwen-shaped data for tests, the crash harness and benchmarks:
//! unit-norm token vectors drawn around a few "topics" per page (so rankings have structure and
//! compressed-mode recall means something), and queries drawn from a target page's topics.

/// splitmix64: tiny, seedable, good enough for test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

pub struct Corpus {
    pub dim: usize,
    pub seed: u64,
    topics: Vec<f32>,
    n_topics: usize,
}

const TOPICS_PER_PAGE: u64 = 4;

impl Corpus {
    pub fn new(seed: u64, dim: usize, n_topics: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut topics: Vec<f32> = (0..n_topics * dim).map(|_| rng.normal()).collect();
        topics.chunks_exact_mut(dim).for_each(normalise);
        Self {
            dim,
            seed,
            topics,
            n_topics,
        }
    }

    fn page_topics(&self, page: u64) -> Vec<usize> {
        let mut rng = Rng::new(self.seed ^ page.wrapping_mul(0xA24B_AED4_963E_E407));
        (0..TOPICS_PER_PAGE)
            .map(|_| rng.below(self.n_topics as u64) as usize)
            .collect()
    }

    /// `n_tokens × dim` unit vectors of page `page`.
    pub fn page(&self, page: u64, n_tokens: usize) -> Vec<f32> {
        let topics = self.page_topics(page);
        let mut rng =
            Rng::new(self.seed.wrapping_add(1) ^ page.wrapping_mul(0x9FB2_1C65_1E98_DF25));
        self.draw(&topics, n_tokens, 0.12, &mut rng)
    }

    /// `nq × dim` unit query vectors aimed at page `target`'s topics.
    pub fn query(&self, target: u64, nq: usize, salt: u64) -> Vec<f32> {
        let topics = self.page_topics(target);
        let mut rng =
            Rng::new(self.seed.wrapping_add(2) ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        self.draw(&topics, nq, 0.15, &mut rng)
    }

    fn draw(&self, topics: &[usize], n: usize, noise: f32, rng: &mut Rng) -> Vec<f32> {
        let dim = self.dim;
        let mut out = vec![0f32; n * dim];
        for row in out.chunks_exact_mut(dim) {
            let t = topics[rng.below(topics.len() as u64) as usize];
            let c = &self.topics[t * dim..(t + 1) * dim];
            for (o, &x) in row.iter_mut().zip(c) {
                *o = x + noise * rng.normal();
            }
            normalise(row);
        }
        out
    }
}
