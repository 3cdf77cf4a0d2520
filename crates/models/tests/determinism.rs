//! Same inputs, same bits: the encoder's forward pass and its gradients do not depend on how the
//! multi-threaded kernels (Burn's products on the rayon pool, our fused kernels on scoped threads)
//! happen to split the work. The shapes are large enough to take every parallel path.

use adaptable_models::{EncoderConfig, EncoderInput};
use burn::tensor::{Device, Tensor};

fn input(c: &EncoderConfig, batch: usize, seq: usize, device: &Device) -> EncoderInput {
    let rows: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            // Every other row padded by a quarter, so the mask is exercised too.
            let len = if b % 2 == 0 { seq } else { seq - seq / 4 };
            (0..len)
                .map(|s| (3 + (b * 131 + s * 17) % (c.vocab_size - 3)) as u32)
                .collect()
        })
        .collect();
    EncoderInput::pad(&rows, c.pad_token_id as u32, device).expect("valid batch")
}

#[test]
fn forward_and_gradients_repeat_bit_for_bit() {
    let mut config = EncoderConfig::minilm_l6().with_dropout(0.0);
    config.num_hidden_layers = 2;
    let device = Device::default();
    let encoder = config.init(&device).expect("valid config");
    let x = input(&config, 16, 64, &device);
    let forward = || encoder.forward(&x, None).into_data();
    assert_eq!(forward(), forward(), "forward pass");

    let train = device.autodiff();
    let encoder = config.init(&train).expect("valid config");
    let x = input(&config, 16, 64, &train);
    let step = || {
        let h: Tensor<3> = encoder.forward(&x, None);
        let grads = h.powi_scalar(2).mean().backward();
        let layer = &encoder.layers[1];
        [
            &layer.attention.query.base.weight,
            &layer.intermediate.base.weight,
            &layer.output.base.weight,
        ]
        .map(|w| w.grad(&grads).expect("gradient").into_data())
    };
    assert_eq!(step(), step(), "gradients");
}
