//! A small dense row-major matrix in `f64`, enough to generate tasks and summarise samples exactly.
//!
//! Task data stays independent of any tensor library so that every consumer (Burn models, analysis
//! scripts, tests) sees the same numbers; `f64` keeps the sufficient statistics of large samples exact
//! to well below the `f32` precision the models train in.

use serde::{Deserialize, Serialize};

/// A dense `rows × cols` matrix stored row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// The identity matrix of size `n`.
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.set(i, i, 1.0);
        }
        m
    }

    /// Builds a matrix from row-major data; `None` when the length does not match the shape.
    pub fn from_row_major(rows: usize, cols: usize, data: Vec<f64>) -> Option<Self> {
        (data.len() == rows * cols).then_some(Self { rows, cols, data })
    }

    /// Builds a matrix whose entry `(i, j)` is `f(i, j)`.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                data.push(f(i, j));
            }
        }
        Self { rows, cols, data }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// Sets entry `(i, j)`.
    pub fn set(&mut self, i: usize, j: usize, value: f64) {
        self.data[i * self.cols + j] = value;
    }

    /// The row-major entries.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// The entries converted to `f32`, row-major (the layout Burn's `TensorData` expects).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    /// The transpose.
    pub fn transpose(&self) -> Self {
        Self::from_fn(self.cols, self.rows, |i, j| self.get(j, i))
    }

    /// The product `self · other`.
    ///
    /// # Panics
    /// When the inner dimensions differ (a programming error, never a data error).
    pub fn matmul(&self, other: &Matrix) -> Self {
        assert_eq!(self.cols, other.rows, "matmul: inner dimensions differ");
        let mut out = Self::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.get(i, k);
                if a == 0.0 {
                    continue;
                }
                let row = &other.data[k * other.cols..(k + 1) * other.cols];
                let dst = &mut out.data[i * other.cols..(i + 1) * other.cols];
                for (d, &b) in dst.iter_mut().zip(row) {
                    *d += a * b;
                }
            }
        }
        out
    }

    /// The product `self · otherᵀ`, without materialising the transpose.
    ///
    /// This is the shape of every sufficient statistic (`X Xᵀ`, `Y Xᵀ`) with samples as columns.
    pub fn matmul_transposed(&self, other: &Matrix) -> Self {
        assert_eq!(
            self.cols, other.cols,
            "matmul_transposed: column counts differ"
        );
        Self::from_fn(self.rows, other.rows, |i, j| {
            let a = &self.data[i * self.cols..(i + 1) * self.cols];
            let b = &other.data[j * other.cols..(j + 1) * other.cols];
            a.iter().zip(b).map(|(x, y)| x * y).sum()
        })
    }

    /// Entry-wise sum.
    pub fn add(&self, other: &Matrix) -> Self {
        self.zip_with(other, |a, b| a + b)
    }

    /// Entry-wise difference.
    pub fn sub(&self, other: &Matrix) -> Self {
        self.zip_with(other, |a, b| a - b)
    }

    /// Multiplies every entry by `factor`.
    pub fn scale(&self, factor: f64) -> Self {
        Self {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|v| v * factor).collect(),
        }
    }

    /// The squared Frobenius norm.
    pub fn frobenius_sq(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum()
    }

    /// The trace (sum of the diagonal) of a square matrix.
    pub fn trace(&self) -> f64 {
        (0..self.rows.min(self.cols)).map(|i| self.get(i, i)).sum()
    }

    fn zip_with(&self, other: &Matrix, f: impl Fn(f64, f64) -> f64) -> Self {
        assert_eq!(
            (self.rows, self.cols),
            (other.rows, other.cols),
            "element-wise operation on matrices of different shapes"
        );
        Self {
            rows: self.rows,
            cols: self.cols,
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_agree_with_hand_computation() {
        let a = Matrix::from_row_major(2, 3, vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let b = Matrix::from_row_major(3, 2, vec![1., 0., 0., 1., 1., 1.]).unwrap();
        assert_eq!(a.matmul(&b).as_slice(), &[4., 5., 10., 11.]);
        assert_eq!(a.matmul_transposed(&a), a.matmul(&a.transpose()));
        assert_eq!(a.transpose().transpose(), a);
        assert_eq!(Matrix::identity(3).trace(), 3.0);
        assert_eq!(a.frobenius_sq(), 91.0);
    }
}
