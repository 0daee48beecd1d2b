"""Stage 6, the calculus asides: a gradient by autograd, and the quadratic "roller coaster" fitted by SGD."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..viz.figures import new_figure, plot_function


def f(x: torch.Tensor) -> torch.Tensor:
    """The book's f: x**2."""
    return x**2


def gradient_at(x: float = 3.0) -> tuple[float, float]:
    """f(x) = x**2 and its gradient at x by autograd (at 3: 9 and 6, since d/dx x**2 = 2x)."""
    xt = torch.tensor(x).requires_grad_()  # tag xt so autograd tracks what is computed from it
    yt = f(xt)
    yt.backward()  # fills xt.grad
    return yt.item(), xt.grad.item()


def quadratic(t: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Our guess at the speed curve: a*t**2 + b*t + c."""
    a, b, c = params
    return a * (t**2) + (b * t) + c


def mse(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return ((preds - targets) ** 2).mean()


@dataclass
class RollerCoaster:
    """The speed of a roller coaster over the top of a hump, measured with noise, and a quadratic fitted to it."""
    seed: int = 42
    lr: float = 1e-5
    time: torch.Tensor = field(init=False)
    speed: torch.Tensor = field(init=False)
    params: torch.Tensor = field(init=False)

    def __post_init__(self):
        g = torch.Generator().manual_seed(self.seed)
        self.time = torch.arange(0, 20).float()
        self.speed = torch.randn(20, generator=g) * 3 + 0.75 * (self.time - 9.5) ** 2 + 1
        self.params = torch.randn(3, generator=g).requires_grad_()

    def apply_step(self) -> tuple[float, torch.Tensor]:
        """One gradient-descent step: predict, loss, backward, step, reset the gradient. Returns (loss, preds)."""
        preds = quadratic(self.time, self.params)
        loss = mse(preds, self.speed)
        loss.backward()
        self.params.data -= self.lr * self.params.grad.data
        self.params.grad = None
        return loss.item(), preds.detach()

    def fit(self, steps: int = 10) -> tuple[list[float], list[torch.Tensor]]:
        """Run `steps` steps; return the loss before each step and the predictions it made."""
        losses, preds = zip(*(self.apply_step() for _ in range(steps)))
        return list(losses), list(preds)


def roller_coaster_figure(rc: RollerCoaster, preds: list[torch.Tensor], panels: int = 4):
    """The data and the fitted curve at `panels` steps spread over the run, showing the fit improving."""
    fig, axes = new_figure(3 * panels, 3, 1, panels)
    steps = torch.linspace(0, len(preds) - 1, panels).round().long().tolist()
    for ax, step in zip(axes, steps):
        ax.scatter(rc.time.numpy(), rc.speed.numpy(), s=12)
        ax.scatter(rc.time.numpy(), preds[step].numpy(), color="red", s=12)
        ax.set_title(f"step {step + 1}: loss {mse(preds[step], rc.speed).item():.0f}", fontsize=9)
        ax.set_ylim(-300, 100)
    return fig


FUNCTIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "square": f}


def gradient_figure(x: float = 3.0):
    """x**2 with the point (x, x**2) and the tangent line whose slope autograd computed."""
    y, g = gradient_at(x)
    fig = plot_function(f, "x", "x**2", f"gradient of x**2 at {x:g} is {g:g}", min=-abs(x) - 1, max=abs(x) + 1)
    ax = fig.axes[0]
    ax.scatter([x], [y], color="red", zorder=3)
    xs = torch.tensor([x - 1.5, x + 1.5])
    ax.plot(xs.numpy(), (y + g * (xs - x)).numpy(), color="red", ls="--")
    return fig
