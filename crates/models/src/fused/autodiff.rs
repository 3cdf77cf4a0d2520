//! The autodiff implementation: each fused operation is one step of the graph, with its own
//! backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::{Autodiff, Backend, tensor::FloatTensor};

use super::FusedOps;

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn attention_train_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        heads: usize,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        use burn::backend::AutodiffBackend;
        use burn::backend::autodiff::NodeId;

        /// The inputs' checkpoints, the bias, the backend's saved tensor, the seed, the heads
        /// and the keep probability.
        type State<B> = (
            [NodeId; 3],
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            usize,
            f64,
        );

        #[derive(Debug)]
        struct AttentionBackward;

        impl<B: Backend + FusedOps> Backward<B, 3> for AttentionBackward {
            type State = State<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let ([q, k, v], bias, saved, seed, heads, keep) = ops.state;
                let [q, k, v] = [q, k, v]
                    .map(|id| checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(id));
                let (grad_q, grad_k, grad_v) =
                    B::attention_train_backward(q, k, v, bias, saved, seed, grad, heads, keep);
                for (node, grad) in ops.parents.into_iter().zip([grad_q, grad_k, grad_v]) {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let (bias, seed) = (mask_bias.into_primitive(), seed.into_primitive());
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let checkpoints = [
                    prep.checkpoint(&q),
                    prep.checkpoint(&k),
                    prep.checkpoint(&v),
                ];
                let (context, saved) = B::attention_train_forward(
                    q.primitive().clone(),
                    k.primitive().clone(),
                    v.primitive().clone(),
                    bias.clone(),
                    seed.clone(),
                    heads,
                    keep,
                );
                let state = (checkpoints, bias, saved.clone(), seed, heads, keep);
                (prep.finish(state, context), Self::from_inner(saved))
            }
            OpsKind::UnTracked(prep) => {
                let (context, saved) = B::attention_train_forward(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    bias,
                    seed,
                    heads,
                    keep,
                );
                (prep.finish(context), Self::from_inner(saved))
            }
        }
    }

    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: Backend + FusedOps> Backward<B, 1> for GeluBackward {
            type State = burn::backend::autodiff::NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let input = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::gelu_exact_backward(input, grad)
                });
            }
        }

        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::gelu_exact(x.primitive().clone()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
        }
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        use burn::backend::autodiff::NodeId;

        #[derive(Debug)]
        struct LayerNormBackward;

        impl<B: Backend + FusedOps> Backward<B, 3> for LayerNormBackward {
            type State = (NodeId, NodeId, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, epsilon) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let gamma =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
                let (grad_x, grad_gamma, grad_beta) =
                    B::layer_norm_last_backward(x, gamma, grad, epsilon);
                for (node, grad) in [
                    (node_x, grad_x),
                    (node_gamma, grad_gamma),
                    (node_beta, grad_beta),
                ] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&gamma), epsilon);
                let output = B::layer_norm_last(
                    x.primitive().clone(),
                    gamma.primitive().clone(),
                    beta.into_primitive(),
                    epsilon,
                );
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_last(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }
}
