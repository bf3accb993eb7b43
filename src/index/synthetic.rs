//! Deterministic synthetic ColQwen-shaped data for tests, the crash harness and benchmarks:
//! unit-norm token vectors with the structure that makes ranking (and compressed-mode recall)
//! non-trivial, modelled on what ColQwen page and query embeddings look like:
//! - topics of Zipf-like popularity, so many pages share the popular ones (hard negatives);
//! - per page, 3–8 topics, each as a page-specific sub-centroid (the topic moved by a random
//!   offset of norm 0.8), its content tokens drawn around those (noise of norm 0.6);
//! - a page-dependent share (20–60 %) of background tokens near a few directions common to every
//!   page (margins, blank space: noise of norm 0.3);
//! - queries: 6 prompt tokens shared by every query (the query prompt and special tokens), the
//!   rest drawn around the target page's sub-centroids (noise of norm 0.7).
//!
//! Noise is isotropic Gaussian scaled by 1/√dim, so the norms above hold at any dimension.
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
    background: Vec<f32>,
    prompt: Vec<f32>,
}

const BACKGROUND_DIRECTIONS: usize = 4;
const PROMPT_TOKENS: usize = 6;
const SUB_CENTROID_OFFSET: f32 = 0.8;
const CONTENT_NOISE: f32 = 0.6;
const BACKGROUND_NOISE: f32 = 0.3;
const QUERY_NOISE: f32 = 0.7;
const PROMPT_NOISE: f32 = 0.1;

impl Corpus {
    pub fn new(seed: u64, dim: usize, n_topics: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut unit_rows = |n: usize| {
            let mut v: Vec<f32> = (0..n * dim).map(|_| rng.normal()).collect();
            v.chunks_exact_mut(dim).for_each(normalise);
            v
        };
        let n_topics = n_topics.max(1);
        let topics = unit_rows(n_topics);
        let background = unit_rows(BACKGROUND_DIRECTIONS);
        let prompt = unit_rows(PROMPT_TOKENS);
        Self {
            dim,
            seed,
            topics,
            n_topics,
            background,
            prompt,
        }
    }

    /// `v` plus isotropic noise of expected norm `norm`, normalised.
    fn around(&self, v: &[f32], norm: f32, rng: &mut Rng) -> Vec<f32> {
        let s = norm / (self.dim as f32).sqrt();
        let mut out: Vec<f32> = v.iter().map(|&x| x + s * rng.normal()).collect();
        normalise(&mut out);
        out
    }

    /// The page's sub-centroids (one per topic it covers, flattened) and its background share.
    fn page_layout(&self, page: u64) -> (Vec<f32>, f32) {
        let mut rng = Rng::new(self.seed ^ page.wrapping_mul(0xA24B_AED4_963E_E407));
        let k = 3 + rng.below(6) as usize;
        let mut subs = Vec::with_capacity(k * self.dim);
        for _ in 0..k {
            // u² skews the choice towards low topic indices: a few topics are on many pages.
            let u = rng.uniform();
            let t = ((u * u) * self.n_topics as f32) as usize % self.n_topics;
            let c = &self.topics[t * self.dim..(t + 1) * self.dim];
            subs.extend(self.around(c, SUB_CENTROID_OFFSET, &mut rng));
        }
        let background_share = 0.2 + 0.4 * rng.uniform();
        (subs, background_share)
    }

    /// `n_tokens × dim` unit vectors of page `page`.
    pub fn page(&self, page: u64, n_tokens: usize) -> Vec<f32> {
        let (subs, bg_share) = self.page_layout(page);
        let k = subs.len() / self.dim;
        let mut rng =
            Rng::new(self.seed.wrapping_add(1) ^ page.wrapping_mul(0x9FB2_1C65_1E98_DF25));
        let mut out = Vec::with_capacity(n_tokens * self.dim);
        for _ in 0..n_tokens {
            let row = if rng.uniform() < bg_share {
                let b = rng.below(BACKGROUND_DIRECTIONS as u64) as usize;
                let c = &self.background[b * self.dim..(b + 1) * self.dim];
                self.around(c, BACKGROUND_NOISE, &mut rng)
            } else {
                let j = rng.below(k as u64) as usize;
                self.around(
                    &subs[j * self.dim..(j + 1) * self.dim],
                    CONTENT_NOISE,
                    &mut rng,
                )
            };
            out.extend(row);
        }
        out
    }

    /// `nq × dim` unit query vectors aimed at page `target`: the shared prompt tokens first,
    /// then tokens around the target's sub-centroids.
    pub fn query(&self, target: u64, nq: usize, salt: u64) -> Vec<f32> {
        let (subs, _) = self.page_layout(target);
        let k = subs.len() / self.dim;
        let mut rng =
            Rng::new(self.seed.wrapping_add(2) ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let mut out = Vec::with_capacity(nq * self.dim);
        for i in 0..nq {
            let row = if i < PROMPT_TOKENS.min(nq.saturating_sub(1)) {
                let c = &self.prompt[i * self.dim..(i + 1) * self.dim];
                self.around(c, PROMPT_NOISE, &mut rng)
            } else {
                let j = rng.below(k as u64) as usize;
                self.around(
                    &subs[j * self.dim..(j + 1) * self.dim],
                    QUERY_NOISE,
                    &mut rng,
                )
            };
            out.extend(row);
        }
        out
    }
}
