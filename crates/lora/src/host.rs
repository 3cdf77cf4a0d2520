//! Kernels on plain `f32` slices for backends whose tensors live in host memory: the dropout mask
//! and the adapter path `s · (dropout(x) A) B` with its backward, fused so that neither the mask
//! nor the masked input is ever stored.
//!
//! The products with the adapter factors are dot products written with pulp's vectors; the other
//! loops are written so that the compiler vectorises them. Everything runs under pulp's dispatch,
//! which compiles it for the widest instructions the CPU has (AVX-512 or AVX2 with FMA, chosen at
//! run time). Rows are split across [`threads`].

/// Below this many elements one thread is faster than starting another.
pub const PARALLEL_MIN: usize = 1 << 16;

/// Rows processed together (the mask and the masked input of a block stay in L1/L2).
const BLOCK_ROWS: usize = 8;

/// The golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// How many threads the host kernels use: `RAYON_NUM_THREADS` when set to a positive number, as
/// for Burn's own parallel operations (so one setting bounds both), otherwise every available core.
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// A dropout mask as a pure function of the element index: element `e` keeps (value `1 / keep`)
/// when a 32-bit half of SplitMix64 output number `e / 2 + 1` from `seed` — the low half for even
/// `e`, the high half for odd — is below `keep · 2³²`; otherwise it is 0. Any range of the mask can
/// be computed on its own, which lets the fused adapter backward rebuild it row by row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskStream {
    seed: u64,
    threshold: u64,
    value: f32,
}

impl MaskStream {
    /// The mask keeping each element with probability `keep` (clamped to `[0, 1]`), from `seed`.
    pub fn new(keep: f64, seed: u64) -> Self {
        let keep = keep.clamp(0.0, 1.0);
        Self {
            seed,
            threshold: (keep * 4_294_967_296.0) as u64,
            value: (1.0 / keep) as f32,
        }
    }

    #[inline(always)]
    fn draw(&self, counter: u64) -> u64 {
        let mut z = self.seed.wrapping_add(counter.wrapping_mul(GAMMA));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[inline(always)]
    fn value(&self, bits: u64) -> f32 {
        if bits < self.threshold {
            self.value
        } else {
            0.0
        }
    }

    /// Writes the mask values of elements `start .. start + out.len()` into `out`.
    pub fn fill(&self, start: usize, out: &mut [f32]) {
        pulp::Arch::new().dispatch(FillMask {
            stream: self,
            start,
            out,
        });
    }

    /// [`fill`](Self::fill) for callers already inside a pulp dispatch: inlined, so it is compiled
    /// with their instruction set.
    #[inline(always)]
    pub fn fill_inline(&self, start: usize, out: &mut [f32]) {
        let mut element = start;
        let mut out = out;
        if element % 2 == 1 {
            let Some((first, rest)) = out.split_first_mut() else {
                return;
            };
            *first = self.value(self.draw((element / 2 + 1) as u64) >> 32);
            element += 1;
            out = rest;
        }
        // Whole draws, 16 at a time so that the 64-bit mixing runs in vector registers.
        const DRAWS: usize = 16;
        let mut counter = (element / 2 + 1) as u64;
        let mut blocks = out.chunks_exact_mut(2 * DRAWS);
        for block in &mut blocks {
            let mut bits = [0_u64; DRAWS];
            for (i, b) in bits.iter_mut().enumerate() {
                *b = self.draw(counter + i as u64);
            }
            for (pair, b) in block.chunks_exact_mut(2).zip(bits) {
                pair[0] = self.value(b & 0xFFFF_FFFF);
                pair[1] = self.value(b >> 32);
            }
            counter += DRAWS as u64;
        }
        for pair in blocks.into_remainder().chunks_mut(2) {
            let b = self.draw(counter);
            pair[0] = self.value(b & 0xFFFF_FFFF);
            if let Some(second) = pair.get_mut(1) {
                *second = self.value(b >> 32);
            }
            counter += 1;
        }
    }
}

/// One call of [`MaskStream::fill`] for pulp (a struct: pulp calls closures out of line).
struct FillMask<'a> {
    stream: &'a MaskStream,
    start: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for FillMask<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.stream.fill_inline(self.start, self.out)
    }
}

/// A kernel over whole blocks of an output slice, run under pulp's dispatch: `run` gets the
/// instruction set pulp picked (`simd`), the index of its chunk's first block and the chunk.
/// Closures `Fn(first, chunk)` are kernels that let the compiler vectorise their loops.
pub trait BlockKernel: Sync {
    /// Processes `out`, whose first block has index `first`.
    fn run<S: pulp::Simd>(&self, simd: S, first: usize, out: &mut [f32]);
}

impl<F: Fn(usize, &mut [f32]) + Sync> BlockKernel for F {
    #[inline(always)]
    fn run<S: pulp::Simd>(&self, _: S, first: usize, out: &mut [f32]) {
        self(first, out)
    }
}

/// Runs `kernel` over chunks of `out` made of whole blocks of `block` values, on [`threads`]
/// threads (one when `out` is small).
///
/// The kernel and everything it calls must be `#[inline(always)]` (closures included): only code
/// inlined into pulp's dispatch is compiled with the wider instructions (AVX-512 or AVX2 with
/// FMA, chosen at run time), which the baseline x86-64 build cannot use.
pub fn par_blocks(out: &mut [f32], block: usize, kernel: impl BlockKernel) {
    par_blocks_for(out.len(), out, block, kernel)
}

/// [`par_blocks`] for kernels whose work is not the size of their output (a reduction reads far
/// more than it writes): `work` elements decide whether more than one thread runs.
pub fn par_blocks_for(work: usize, out: &mut [f32], block: usize, kernel: impl BlockKernel) {
    let run = |first: usize, out: &mut [f32]| {
        pulp::Arch::new().dispatch(BlockDispatched {
            kernel: &kernel,
            first,
            out,
        })
    };
    let threads = threads();
    if threads == 1 || work < PARALLEL_MIN || out.len() <= block {
        return run(0, out);
    }
    let chunk = out.len().div_ceil(threads).div_ceil(block) * block;
    std::thread::scope(|scope| {
        let run = &run;
        for (i, os) in out.chunks_mut(chunk).enumerate() {
            scope.spawn(move || run(i * chunk / block, os));
        }
    });
}

/// One call of a block kernel, for pulp to run with the instructions it picked.
///
/// A struct rather than a closure: pulp would call a closure through its `FnOnce::call_once`
/// shim, which LLVM left out of line (compiled for SSE2 only, seen in `perf annotate`).
struct BlockDispatched<'a, K> {
    kernel: &'a K,
    first: usize,
    out: &'a mut [f32],
}

impl<K: BlockKernel> pulp::WithSimd for BlockDispatched<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        self.kernel.run(simd, self.first, self.out)
    }
}

/// Multiplies `values` (elements `0 .. len` of a tensor) by the mask `stream` in place: dropout,
/// and its backward on the output gradient, without storing the mask.
pub fn apply_mask(values: &mut [f32], stream: &MaskStream) {
    // Mask values are made a block at a time on the stack, where they stay in L1.
    const BLOCK: usize = 512;
    par_blocks(
        values,
        BLOCK,
        #[inline(always)]
        |first: usize, chunk: &mut [f32]| {
            let mut mask = [0.0_f32; BLOCK];
            for (i, block) in chunk.chunks_mut(BLOCK).enumerate() {
                let mask = &mut mask[..block.len()];
                stream.fill_inline((first + i) * BLOCK, mask);
                for (v, m) in block.iter_mut().zip(mask.iter()) {
                    *v *= *m;
                }
            }
        },
    );
}

/// The shapes and constants of one adapter call: `x` is `[rows, d_in]`, `A` is `[d_in, rank]`,
/// `B` is `[rank, d_out]` (row-major, as `LoraLinear` stores them), the delta is
/// `scale · (x ⊙ mask) A B`, with no mask when `mask` is `None`.
#[derive(Debug, Clone, Copy)]
pub struct AdapterShape {
    /// Rows of `x` (tokens).
    pub rows: usize,
    /// Input features.
    pub d_in: usize,
    /// Output features.
    pub d_out: usize,
    /// Adapter rank.
    pub rank: usize,
    /// The factor multiplying `A B`.
    pub scale: f32,
    /// The dropout mask on the adapter input, if dropout is active.
    pub mask: Option<MaskStream>,
}

impl AdapterShape {
    /// Whether `x`, `A` and `B` hold at least the values the shape says.
    fn fits(&self, x: &[f32], a: &[f32], b: &[f32]) -> bool {
        x.len() >= self.rows * self.d_in
            && a.len() >= self.d_in * self.rank
            && b.len() >= self.rank * self.d_out
    }

    /// Rows per thread (whole row blocks), or `None` when one thread does all the rows.
    fn rows_per_thread(&self) -> Option<usize> {
        let threads = if self.rows * self.d_in < PARALLEL_MIN {
            1
        } else {
            threads()
        };
        let chunk = self.rows.div_ceil(threads).div_ceil(BLOCK_ROWS) * BLOCK_ROWS;
        (threads > 1 && chunk < self.rows).then_some(chunk)
    }
}

/// The transpose of a row-major `[rows, cols]` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for (r, row) in m.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// Adds `scale · (x ⊙ mask) A B`, and `bias` (`[d_out]`) when given, to every row of `out`
/// (`[rows, d_out]`).
///
/// # Panics
///
/// If a slice is shorter than its shape says.
pub fn adapter_forward(
    out: &mut [f32],
    x: &[f32],
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    shape: AdapterShape,
) {
    let AdapterShape {
        rows,
        d_in,
        d_out,
        rank,
        ..
    } = shape;
    assert!(
        out.len() >= rows * d_out && shape.fits(x, a, b) && bias.is_none_or(|b| b.len() >= d_out),
        "adapter_forward: slices shorter than {shape:?}"
    );
    let a_t = transpose(&a[..d_in * rank], d_in, rank);
    let kernel = ForwardRows {
        x,
        a_t: &a_t,
        b,
        bias: bias.map(|b| &b[..d_out]),
        shape,
    };
    let out = &mut out[..rows * d_out];
    let Some(chunk_rows) = shape.rows_per_thread() else {
        return run_forward(&kernel, 0, out);
    };
    std::thread::scope(|scope| {
        let kernel = &kernel;
        for (i, chunk) in out.chunks_mut(chunk_rows * d_out).enumerate() {
            scope.spawn(move || run_forward(kernel, i * chunk_rows, chunk));
        }
    });
}

fn run_forward(kernel: &ForwardRows<'_>, first_row: usize, out: &mut [f32]) {
    pulp::Arch::new().dispatch(Dispatched {
        kernel,
        first_row,
        out,
    })
}

/// The forward over a range of rows.
struct ForwardRows<'a> {
    x: &'a [f32],
    /// `Aᵀ`, `[rank, d_in]`.
    a_t: &'a [f32],
    b: &'a [f32],
    bias: Option<&'a [f32]>,
    shape: AdapterShape,
}

/// Scratch of one row block: the masked input, the mask and `(x ⊙ mask) A`.
struct Block {
    xm: Vec<f32>,
    mask: Vec<f32>,
    /// `(x ⊙ mask) A`, `[rows, rank]`.
    down: Vec<f32>,
}

impl Block {
    fn new(shape: &AdapterShape) -> Self {
        Self {
            xm: vec![0.0; BLOCK_ROWS * shape.d_in],
            mask: vec![0.0; BLOCK_ROWS * shape.d_in],
            down: vec![0.0; BLOCK_ROWS * shape.rank],
        }
    }

    /// Loads `rows` rows of `x` from row `row` masked, and computes their `(x ⊙ mask) A`.
    #[inline(always)]
    fn load<S: pulp::Simd>(
        &mut self,
        simd: S,
        x: &[f32],
        a_t: &[f32],
        shape: &AdapterShape,
        row: usize,
        rows: usize,
    ) {
        let (d_in, rank) = (shape.d_in, shape.rank);
        let n = rows * d_in;
        let source = &x[row * d_in..][..n];
        match &shape.mask {
            Some(mask) => {
                mask.fill_inline(row * d_in, &mut self.mask[..n]);
                for ((xm, &v), &m) in self.xm[..n].iter_mut().zip(source).zip(&self.mask[..n]) {
                    *xm = v * m;
                }
            }
            None => self.xm[..n].copy_from_slice(source),
        }
        for (xm_row, down) in self.xm[..n]
            .chunks_exact(d_in)
            .zip(self.down.chunks_exact_mut(rank))
        {
            dots(simd, xm_row, a_t, down);
        }
    }
}

/// `out[j] = Σ_k x[k] · m[j·len + k]` (`len = x.len()`) for the first `out.len()` rows of `m`: four
/// rows per pass over `x`, in vectors of pulp's width, the tail that fills no vector added last.
#[inline(always)]
fn dots<S: pulp::Simd>(simd: S, x: &[f32], m: &[f32], out: &mut [f32]) {
    let len = x.len();
    let body = len / S::F32_LANES * S::F32_LANES;
    // pulp's vector types are `repr(C)` arrays of f32 (alignment 4), so any whole number of
    // lanes casts.
    let xv: &[S::f32s] = pulp::bytemuck::cast_slice(&x[..body]);
    let row = |j: usize| -> &[S::f32s] { pulp::bytemuck::cast_slice(&m[j * len..][..body]) };
    let tail = |j: usize| -> f32 {
        x[body..]
            .iter()
            .zip(&m[j * len + body..(j + 1) * len])
            .map(|(a, b)| a * b)
            .sum()
    };
    let mut j = 0;
    while j + 4 <= out.len() {
        let rows = [row(j), row(j + 1), row(j + 2), row(j + 3)];
        let mut acc = [simd.splat_f32s(0.0); 4];
        for (v, &xk) in xv.iter().enumerate() {
            for (a, r) in acc.iter_mut().zip(&rows) {
                *a = simd.mul_add_f32s(xk, r[v], *a);
            }
        }
        for (i, a) in acc.into_iter().enumerate() {
            out[j + i] = simd.reduce_sum_f32s(a) + tail(j + i);
        }
        j += 4;
    }
    for (j, o) in out.iter_mut().enumerate().skip(j) {
        let mut acc = simd.splat_f32s(0.0);
        for (&xk, &mk) in xv.iter().zip(row(j)) {
            acc = simd.mul_add_f32s(xk, mk, acc);
        }
        *o = simd.reduce_sum_f32s(acc) + tail(j);
    }
}

/// `out[i] += Σ_j coefs[j] · rows[j·stride + i]`: a combination of `coefs.len()` rows of length
/// `out.len()`, eight rows per pass over `out` so that each output vector is loaded and stored once
/// per eight multiply-adds (the accumulator stays in a register).
#[inline(always)]
fn combine<S: pulp::Simd>(simd: S, out: &mut [f32], coefs: &[f32], rows: &[f32], stride: usize) {
    let mut j = 0;
    while j + 8 <= coefs.len() {
        combine_group::<S, 8>(simd, out, &coefs[j..j + 8], &rows[j * stride..], stride);
        j += 8;
    }
    while j + 4 <= coefs.len() {
        combine_group::<S, 4>(simd, out, &coefs[j..j + 4], &rows[j * stride..], stride);
        j += 4;
    }
    while j < coefs.len() {
        combine_group::<S, 1>(simd, out, &coefs[j..j + 1], &rows[j * stride..], stride);
        j += 1;
    }
}

/// [`combine`] for exactly `N` rows.
#[inline(always)]
fn combine_group<S: pulp::Simd, const N: usize>(
    simd: S,
    out: &mut [f32],
    coefs: &[f32],
    rows: &[f32],
    stride: usize,
) {
    let len = out.len();
    let body = len / S::F32_LANES * S::F32_LANES;
    let c: [S::f32s; N] = std::array::from_fn(|i| simd.splat_f32s(coefs[i]));
    let r: [&[S::f32s]; N] =
        std::array::from_fn(|i| pulp::bytemuck::cast_slice(&rows[i * stride..][..body]));
    let (out_body, out_tail) = out.split_at_mut(body);
    let out_body: &mut [S::f32s] = pulp::bytemuck::cast_slice_mut(out_body);
    for (v, o) in out_body.iter_mut().enumerate() {
        let mut acc = *o;
        for i in 0..N {
            acc = simd.mul_add_f32s(c[i], r[i][v], acc);
        }
        *o = acc;
    }
    for (t, o) in out_tail.iter_mut().enumerate() {
        for i in 0..N {
            *o += coefs[i] * rows[i * stride + body + t];
        }
    }
}

/// `y += a · x` over equal-length slices.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// One call of a row-range kernel for pulp.
struct Dispatched<'a, K> {
    kernel: &'a K,
    first_row: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Dispatched<'_, ForwardRows<'_>> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let ForwardRows {
            x,
            a_t,
            b,
            bias,
            shape,
        } = self.kernel;
        let (d_out, rank) = (shape.d_out, shape.rank);
        let mut block = Block::new(shape);
        let mut coefs = vec![0.0_f32; rank];
        for (i, out) in self.out.chunks_mut(BLOCK_ROWS * d_out).enumerate() {
            let row = self.first_row + i * BLOCK_ROWS;
            let rows = out.len() / d_out;
            block.load(simd, x, a_t, shape, row, rows);
            for (out_row, down) in out
                .chunks_exact_mut(d_out)
                .zip(block.down.chunks_exact(rank))
            {
                for (c, &d) in coefs.iter_mut().zip(down) {
                    *c = shape.scale * d;
                }
                combine(simd, out_row, &coefs, b, d_out);
                if let Some(bias) = bias {
                    axpy(out_row, 1.0, bias);
                }
            }
        }
    }
}

/// The parameter gradients of one adapter call.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterGradients {
    /// `∂A`, `[d_in, rank]`.
    pub a: Vec<f32>,
    /// `∂B`, `[rank, d_out]`.
    pub b: Vec<f32>,
    /// The column sums of the output gradient, `[d_out]`: the gradient of a bias added to the
    /// output.
    pub bias: Vec<f32>,
}

/// Gradients of the adapter path given the output gradient `grad` (`[rows, d_out]`): writes
/// `∂x` of the adapter path into `grad_x` (`[rows, d_in]`; added to what it holds when
/// `accumulate`, else overwriting it) and returns `∂A`, `∂B` (in the layouts of `A` and `B`) and
/// the bias gradient. The mask is rebuilt from its stream, row block by row block.
///
/// # Panics
///
/// If a slice is shorter than its shape says.
pub fn adapter_backward(
    grad: &[f32],
    x: &[f32],
    a: &[f32],
    b: &[f32],
    grad_x: &mut [f32],
    accumulate: bool,
    shape: AdapterShape,
) -> AdapterGradients {
    let AdapterShape {
        rows,
        d_in,
        d_out,
        rank,
        ..
    } = shape;
    assert!(
        grad.len() >= rows * d_out && grad_x.len() >= rows * d_in && shape.fits(x, a, b),
        "adapter_backward: slices shorter than {shape:?}"
    );
    let a_t = transpose(&a[..d_in * rank], d_in, rank);
    let kernel = BackwardRows {
        grad,
        x,
        a_t: &a_t,
        b: &b[..rank * d_out],
        accumulate,
        shape,
    };
    let grad_x = &mut grad_x[..rows * d_in];
    let partials: Vec<Partial> = match shape.rows_per_thread() {
        None => vec![run_backward(&kernel, 0, grad_x)],
        Some(chunk_rows) => std::thread::scope(|scope| {
            let kernel = &kernel;
            let handles: Vec<_> = grad_x
                .chunks_mut(chunk_rows * d_in)
                .enumerate()
                .map(|(i, chunk)| scope.spawn(move || run_backward(kernel, i * chunk_rows, chunk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        }),
    };
    // Summed in thread order, so the result depends on the thread count only, not on timing.
    let mut total = Partial::new(&shape);
    for p in partials {
        axpy(&mut total.a_t, 1.0, &p.a_t);
        axpy(&mut total.b, 1.0, &p.b);
        axpy(&mut total.bias, 1.0, &p.bias);
    }
    AdapterGradients {
        a: transpose(&total.a_t, rank, d_in),
        b: total.b,
        bias: total.bias,
    }
}

/// One thread's share of `∂A` (as `[rank, d_in]`), `∂B` (`[rank, d_out]`) and the bias gradient.
struct Partial {
    a_t: Vec<f32>,
    b: Vec<f32>,
    bias: Vec<f32>,
}

impl Partial {
    fn new(shape: &AdapterShape) -> Self {
        Self {
            a_t: vec![0.0; shape.rank * shape.d_in],
            b: vec![0.0; shape.rank * shape.d_out],
            bias: vec![0.0; shape.d_out],
        }
    }
}

fn run_backward(kernel: &BackwardRows<'_>, first_row: usize, grad_x: &mut [f32]) -> Partial {
    pulp::Arch::new().dispatch(Dispatched {
        kernel,
        first_row,
        out: grad_x,
    })
}

/// The backward over a range of rows.
struct BackwardRows<'a> {
    grad: &'a [f32],
    x: &'a [f32],
    /// `Aᵀ`, `[rank, d_in]`.
    a_t: &'a [f32],
    b: &'a [f32],
    /// Whether `∂x` is added to the output slice rather than written over it.
    accumulate: bool,
    shape: AdapterShape,
}

impl pulp::WithSimd for Dispatched<'_, BackwardRows<'_>> {
    type Output = Partial;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> Partial {
        let BackwardRows {
            grad,
            x,
            a_t,
            b,
            accumulate,
            shape,
        } = self.kernel;
        let (d_in, d_out, rank) = (shape.d_in, shape.d_out, shape.rank);
        let mut block = Block::new(shape);
        let mut partial = Partial::new(shape);
        // ∂down = s · G Bᵀ of the block, `[rows, rank]`, and one column of a factor's coefficients.
        let mut grad_down = vec![0.0_f32; BLOCK_ROWS * rank];
        let mut column = [0.0_f32; BLOCK_ROWS];
        // One row of the adapter's `∂x` before it is masked and added.
        let mut masked_row = vec![0.0_f32; d_in];
        for (i, grad_x) in self.out.chunks_mut(BLOCK_ROWS * d_in).enumerate() {
            let row = self.first_row + i * BLOCK_ROWS;
            let rows = grad_x.len() / d_in;
            block.load(simd, x, a_t, shape, row, rows);
            let grad = &grad[row * d_out..][..rows * d_out];
            let grad_down = &mut grad_down[..rows * rank];
            for (g_row, gd) in grad
                .chunks_exact(d_out)
                .zip(grad_down.chunks_exact_mut(rank))
            {
                dots(simd, g_row, b, gd);
                for v in gd.iter_mut() {
                    *v *= shape.scale;
                }
                axpy(&mut partial.bias, 1.0, g_row);
            }
            let column = &mut column[..rows];
            for j in 0..rank {
                // ∂B_j = s · Σ_rows down_j · G
                for (c, down) in column.iter_mut().zip(block.down.chunks_exact(rank)) {
                    *c = shape.scale * down[j];
                }
                combine(
                    simd,
                    &mut partial.b[j * d_out..][..d_out],
                    column,
                    grad,
                    d_out,
                );
                // (∂A)ᵀ_j = Σ_rows ∂down_j · (x ⊙ mask)
                for (c, gd) in column.iter_mut().zip(grad_down.chunks_exact(rank)) {
                    *c = gd[j];
                }
                combine(
                    simd,
                    &mut partial.a_t[j * d_in..][..d_in],
                    column,
                    &block.xm,
                    d_in,
                );
            }
            // ∂x = (∂down Aᵀ) ⊙ mask
            for (r, (gx_row, gd)) in grad_x
                .chunks_exact_mut(d_in)
                .zip(grad_down.chunks_exact(rank))
                .enumerate()
            {
                match (shape.mask.is_some(), *accumulate) {
                    (false, true) => combine(simd, gx_row, gd, a_t, d_in),
                    (false, false) => {
                        gx_row.fill(0.0);
                        combine(simd, gx_row, gd, a_t, d_in);
                    }
                    (true, _) => {
                        masked_row.fill(0.0);
                        combine(simd, &mut masked_row, gd, a_t, d_in);
                        let mask = &block.mask[r * d_in..][..d_in];
                        if *accumulate {
                            for ((g, &v), &m) in gx_row.iter_mut().zip(&masked_row).zip(mask) {
                                *g += v * m;
                            }
                        } else {
                            for ((g, &v), &m) in gx_row.iter_mut().zip(&masked_row).zip(mask) {
                                *g = v * m;
                            }
                        }
                    }
                }
            }
        }
        partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adapter path in plain loops, mask included, in f64.
    fn reference(x: &[f32], a: &[f32], b: &[f32], shape: AdapterShape) -> Vec<f64> {
        let AdapterShape {
            rows,
            d_in,
            d_out,
            rank,
            ..
        } = shape;
        let mut mask = vec![1.0_f32; rows * d_in];
        if let Some(m) = shape.mask {
            m.fill(0, &mut mask);
        }
        let mut out = vec![0.0; rows * d_out];
        for i in 0..rows {
            for j in 0..rank {
                let down: f64 = (0..d_in)
                    .map(|k| {
                        f64::from(x[i * d_in + k] * mask[i * d_in + k]) * f64::from(a[k * rank + j])
                    })
                    .sum();
                for c in 0..d_out {
                    out[i * d_out + c] +=
                        f64::from(shape.scale) * down * f64::from(b[j * d_out + c]);
                }
            }
        }
        out
    }

    fn values(n: usize, salt: u64) -> Vec<f32> {
        let stream = MaskStream::new(0.5, salt);
        let mut bits = vec![0.0; n];
        stream.fill(0, &mut bits);
        (0..n)
            .map(|i| ((i as f32 * 0.37 + salt as f32).sin()) * (0.5 + bits[i]))
            .collect()
    }

    #[test]
    fn any_range_of_the_mask_equals_the_same_range_of_the_whole_mask() {
        let stream = MaskStream::new(0.7, 11);
        let mut whole = vec![0.0; 301];
        stream.fill(0, &mut whole);
        for (start, len) in [(0, 301), (1, 40), (2, 33), (37, 64), (100, 1), (299, 2)] {
            let mut part = vec![0.0; len];
            stream.fill(start, &mut part);
            assert_eq!(part, whole[start..start + len], "range {start}..+{len}");
        }
    }

    #[test]
    fn the_forward_matches_plain_loops_for_every_rank_and_ragged_row_block() {
        for (rows, d_in, d_out, rank) in
            [(1, 3, 2, 1), (13, 17, 9, 8), (9, 16, 24, 5), (20, 8, 8, 12)]
        {
            for mask in [None, Some(MaskStream::new(0.9, 3))] {
                let shape = AdapterShape {
                    rows,
                    d_in,
                    d_out,
                    rank,
                    scale: 1.5,
                    mask,
                };
                let x = values(rows * d_in, 1);
                let a = values(d_in * rank, 2);
                let b = values(rank * d_out, 3);
                let mut out = vec![1.0; rows * d_out];
                adapter_forward(&mut out, &x, &a, &b, None, shape);
                for (got, want) in out.iter().zip(reference(&x, &a, &b, shape)) {
                    assert!(
                        (f64::from(*got) - 1.0 - want).abs() < 1e-4,
                        "{shape:?}: {got} vs 1 + {want}"
                    );
                }
                // With a bias, every row gains it too.
                let bias = values(d_out, 8);
                let mut biased = vec![1.0; rows * d_out];
                adapter_forward(&mut biased, &x, &a, &b, Some(&bias), shape);
                for (i, (got, plain)) in biased.iter().zip(&out).enumerate() {
                    let want = plain + bias[i % d_out];
                    assert!((got - want).abs() < 1e-5, "{shape:?}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn the_backward_matches_finite_differences_of_the_forward() {
        let shape = AdapterShape {
            rows: 11,
            d_in: 6,
            d_out: 5,
            rank: 3,
            scale: 2.0,
            mask: Some(MaskStream::new(0.8, 9)),
        };
        let x = values(shape.rows * shape.d_in, 4);
        let a = values(shape.d_in * shape.rank, 5);
        let b = values(shape.rank * shape.d_out, 6);
        let grad = values(shape.rows * shape.d_out, 7);
        // The loss Σ grad ⊙ delta is linear in each argument, so central differences are exact
        // up to rounding of the f64 reference.
        let loss = |x: &[f32], a: &[f32], b: &[f32]| -> f64 {
            reference(x, a, b, shape)
                .iter()
                .zip(&grad)
                .map(|(d, &g)| d * f64::from(g))
                .sum()
        };
        let mut grad_x = vec![f32::NAN; shape.rows * shape.d_in];
        let grads = adapter_backward(&grad, &x, &a, &b, &mut grad_x, false, shape);
        let (grad_a, grad_b) = (grads.a, grads.b);
        // Accumulating adds the same ∂x to what the slice held.
        let mut accumulated: Vec<f32> = (0..grad_x.len()).map(|i| i as f32 * 0.5).collect();
        let again = adapter_backward(&grad, &x, &a, &b, &mut accumulated, true, shape);
        for (i, (acc, g)) in accumulated.iter().zip(&grad_x).enumerate() {
            assert!(
                (acc - i as f32 * 0.5 - g).abs() < 1e-5,
                "accumulated ∂x[{i}]"
            );
        }
        assert_eq!((&again.a, &again.b), (&grad_a, &grad_b));
        // The bias gradient is the column sums of the output gradient.
        for (c, &got) in grads.bias.iter().enumerate() {
            let want: f32 = grad.chunks(shape.d_out).map(|row| row[c]).sum();
            assert!((got - want).abs() < 1e-5, "∂bias[{c}]: {got} vs {want}");
        }
        let h = 1e-2_f32;
        let check = |name: &str, analytic: &[f32], which: usize| {
            for i in 0..analytic.len() {
                let mut args = [x.clone(), a.clone(), b.clone()];
                args[which][i] += h;
                let up = loss(&args[0], &args[1], &args[2]);
                args[which][i] -= 2.0 * h;
                let down = loss(&args[0], &args[1], &args[2]);
                let numeric = (up - down) / (2.0 * f64::from(h));
                assert!(
                    (numeric - f64::from(analytic[i])).abs() < 1e-3 * (1.0 + numeric.abs()),
                    "∂{name}[{i}]: analytic {} numeric {numeric}",
                    analytic[i]
                );
            }
        };
        check("x", &grad_x, 0);
        check("A", &grad_a, 1);
        check("B", &grad_b, 2);
    }
}
