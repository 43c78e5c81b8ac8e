"""
Training a NumPy MLP with numadam.Optimizer
===========================================

A two-hidden-layer network on scikit-learn's digits, written in NumPy: six
parameter arrays (three weight matrices, three bias vectors) in two
parameter groups (weight decay on the weights only), a warm-up and cosine
learning-rate schedule, and a checkpoint through ``state_dict`` from which
training resumes exactly where it stopped. Needs scikit-learn
(``pip install "numadam[examples]"``).
"""

import io

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import numadam

rng = np.random.default_rng(0)
X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                    random_state=0)

sizes = [64, 128, 64, 10]
weights = {f"W{k}": rng.standard_normal((a, b)) * np.sqrt(2.0 / a)
           for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}
biases = {f"b{k}": np.zeros(b) for k, b in enumerate(sizes[1:])}


def forward(X, weights, biases):
    """The activations of every layer; the last is the logits."""
    hs = [X]
    for k in range(len(weights)):
        z = hs[-1] @ weights[f"W{k}"] + biases[f"b{k}"]
        hs.append(np.maximum(z, 0.0) if k < len(weights) - 1 else z)
    return hs


def loss_and_gradients(X, y, weights, biases):
    """Mean softmax cross-entropy and its gradients, by backpropagation."""
    hs = forward(X, weights, biases)
    z = hs[-1] - hs[-1].max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    d = p
    d[np.arange(len(y)), y] -= 1.0
    d /= len(y)
    gw, gb = {}, {}
    for k in reversed(range(len(weights))):
        gw[f"W{k}"] = hs[k].T @ d
        gb[f"b{k}"] = d.sum(axis=0)
        if k:
            d = (d @ weights[f"W{k}"].T) * (hs[k] > 0)
    return loss, gw, gb


epochs, batch = 20, 64
steps = epochs * (len(X_train) // batch)
schedule = numadam.schedules.warmup(numadam.schedules.cosine(3e-3, steps), 50)
opt = numadam.Optimizer("adamw", [
    {"params": weights, "weight_decay": 1e-4},
    {"params": biases, "weight_decay": 0.0},
], lr=schedule, clip_norm=5.0)


def train(first, last):
    for epoch in range(first, last):
        order = np.random.default_rng(epoch).permutation(len(X_train))
        for start in range(0, len(order) - batch + 1, batch):
            rows = order[start:start + batch]
            loss, gw, gb = loss_and_gradients(X_train[rows], y_train[rows], weights,
                                              biases)
            opt.step([gw, gb])
    return loss


loss = train(0, epochs // 2)
# a checkpoint: the state dict (torch.optim's layout, NumPy arrays) and the
# parameters, saved together
buffer = io.BytesIO()
np.savez(buffer, state=np.array(opt.state_dict(), dtype=object), **weights, **biases)
loss = train(epochs // 2, epochs)
accuracy = np.mean(forward(X_test, weights, biases)[-1].argmax(axis=1) == y_test)
print(f"after {opt.state[0]['W0'].step} steps: training loss {loss:.4f}, "
      f"test accuracy {accuracy:.3f}")

# resume from the checkpoint in a fresh Optimizer: the second half again,
# to the same bits
final = {k: v.copy() for k, v in weights.items()}
buffer.seek(0)
saved = np.load(buffer, allow_pickle=True)
weights = {k: saved[k].copy() for k in weights}
biases = {k: saved[k].copy() for k in biases}
opt = numadam.Optimizer("adamw", [{"params": weights}, {"params": biases}],
                        lr=schedule, clip_norm=5.0)
opt.load_state_dict(saved["state"].item())
train(epochs // 2, epochs)
same = all(np.array_equal(weights[k], final[k]) for k in weights)
print(f"resumed from step {epochs // 2 * (len(X_train) // batch)}: the same "
      f"weights bit for bit: {same}")
