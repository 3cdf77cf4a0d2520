//! The autodiff implementation: the adapter path is one step of the graph, with its own backward.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, AutodiffBackend, Backend, tensor::FloatTensor};

use super::AdapterOps;

/// The backward step; its state is `x`, `A`, `B` (as checkpointed nodes), the backend's saved
/// tensor, the scale and the keep probability.
#[derive(Debug)]
struct AdapterBackward;

impl<B: Backend + AdapterOps> Backward<B, 4> for AdapterBackward {
    type State = (NodeId, NodeId, NodeId, B::FloatTensorPrimitive, f64, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_base, node_x, node_a, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, a, b, saved, scale, keep) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x);
        let a = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(a);
        let b = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(b);
        let (grad_x, grad_a, grad_b) =
            B::adapter_backward(x, a, b, saved, grad.clone(), scale, keep);
        for (node, grad) in [
            (node_base, grad),
            (node_x, grad_x),
            (node_a, grad_a),
            (node_b, grad_b),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + AdapterOps, C: CheckpointStrategy> AdapterOps for Autodiff<B, C> {
    fn adapter_forward(
        base: FloatTensor<Self>,
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        scale: f64,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let seed = seed.into_primitive();
        match AdapterBackward
            .prepare::<C>([base.node(), x.node(), a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (x_state, a_state, b_state) = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&a),
                    prep.checkpoint(&b),
                );
                let (out, saved) = B::adapter_forward(
                    base.into_primitive(),
                    x.primitive().clone(),
                    a.primitive().clone(),
                    b.primitive().clone(),
                    seed,
                    scale,
                    keep,
                );
                let state = (x_state, a_state, b_state, saved.clone(), scale, keep);
                (prep.finish(state, out), Self::from_inner(saved))
            }
            OpsKind::UnTracked(prep) => {
                let (out, saved) = B::adapter_forward(
                    base.into_primitive(),
                    x.into_primitive(),
                    a.into_primitive(),
                    b.into_primitive(),
                    seed,
                    scale,
                    keep,
                );
                (prep.finish(out), Self::from_inner(saved))
            }
        }
    }

    fn adapted_linear_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        scale: f64,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let seed = seed.into_primitive();
        let parents = [x.node(), weight.node(), bias.node(), a.node(), b.node()];
        match LinearBackward
            .prepare::<C>(parents)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let nodes = [
                    prep.checkpoint(&x),
                    prep.checkpoint(&weight),
                    prep.checkpoint(&a),
                    prep.checkpoint(&b),
                ];
                let (out, saved) = B::adapted_linear_forward(
                    x.primitive().clone(),
                    weight.primitive().clone(),
                    bias.into_primitive(),
                    a.primitive().clone(),
                    b.primitive().clone(),
                    seed,
                    scale,
                    keep,
                );
                let state = (nodes, saved.clone(), scale, keep);
                (prep.finish(state, out), Self::from_inner(saved))
            }
            OpsKind::UnTracked(prep) => {
                let (out, saved) = B::adapted_linear_forward(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    a.into_primitive(),
                    b.into_primitive(),
                    seed,
                    scale,
                    keep,
                );
                (prep.finish(out), Self::from_inner(saved))
            }
        }
    }
}

/// The backward step of [`adapted_linear`](super::adapted_linear); its state is `x`, `W`, `A`,
/// `B` (as checkpointed nodes), the backend's saved tensor, the scale and the keep probability.
#[derive(Debug)]
struct LinearBackward;

impl<B: Backend + AdapterOps> Backward<B, 5> for LinearBackward {
    type State = ([NodeId; 4], B::FloatTensorPrimitive, f64, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 5>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (nodes, saved, scale, keep) = ops.state;
        let [x, weight, a, b] =
            nodes.map(|id| checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(id));
        let [node_x, node_weight, node_bias, node_a, node_b] = ops.parents;
        let (grad_x, grad_weight, grad_bias, grad_a, grad_b) = B::adapted_linear_backward(
            x,
            weight,
            a,
            b,
            saved,
            grad,
            scale,
            keep,
            node_x.is_some(),
            node_weight.is_some(),
        );
        for (node, grad) in [
            (node_x, grad_x),
            (node_weight, grad_weight),
            (node_bias, grad_bias),
            (node_a, grad_a),
            (node_b, grad_b),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}
