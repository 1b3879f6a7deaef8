"""The PyTorch baselines of edlm_ext.integrations.stock.steps keep the rules of the code
they reproduce (what the benchmarks compare our ops against): unmasked positions copied,
[MASK] handling as upstream, the resample's gather, the selections' counts."""
import torch

from edlm_ext.integrations.stock import steps

from . import helpers

G = torch.Generator().manual_seed(0)


def test_sampling_steps():
    logits, x_t = helpers.sampling_case(3, 20, 50, frac=0.5)
    masked = x_t == 0
    for x0 in (steps.mdlm_step(logits, x_t, 0, t=1.0, s=0.0, generator=G), steps.gumbel_max_fp32(logits, x_t, 0),
               steps.llada_step(logits, x_t, 0, generator=G)[0]):
        assert torch.equal(x0[~masked], x_t[~masked])
        assert bool(((x0 >= 0) & (x0 < 50)).all())
    assert not bool((steps.mdlm_step(logits, x_t, 0, t=1.0, s=0.0, generator=G)[masked] == 0).any())  # s = 0: all drawn
    _, conf = steps.llada_step(logits, x_t, 0, generator=G)
    assert bool(((conf[masked] > 0) & (conf[masked] <= 1)).all()) and bool((conf[~masked] == float("-inf")).all())
    props = steps.repeat_then_step(logits, x_t, 0, 4, generator=G)
    assert props.shape == (3, 4, 20) and torch.equal(props[:, 2][~masked], x_t[~masked])


def test_resample():
    log_w, proposals = helpers.resample_case(5, 6, 7)
    weights, log_z, ess, index, chosen = steps.resample(log_w, proposals, generator=G)
    assert torch.allclose(weights.sum(-1), torch.ones(5)) and bool(((ess >= 1) & (ess <= 6 + 1e-5)).all())
    assert torch.equal(chosen, proposals[torch.arange(5), index])
    assert torch.allclose(log_z, torch.logsumexp(log_w, -1))


def test_unmasking_selections():
    x_t, x0, conf = helpers.unmask_case(4, 9)
    masked = x_t == helpers.UNMASK_ID
    assert torch.equal(steps.posterior(x_t, x0, helpers.UNMASK_ID, 0.0, generator=G), x_t)
    assert torch.equal(steps.posterior(x_t, x0, helpers.UNMASK_ID, 1.0, generator=G), torch.where(masked, x0, x_t))
    top = steps.top_n(x_t, x0, conf, helpers.UNMASK_ID, 2)
    assert bool(((top != x_t).sum(1) == 2).all())
    best = torch.where(masked, conf, -1.0).topk(2, dim=1).indices
    assert bool((top.gather(1, best) == 9).all())  # the two most confident masked positions
    sel = steps.threshold_select(x_t, x0, conf, helpers.UNMASK_ID, 2.0)  # none passes: one per row
    assert bool(((sel != x_t).sum(1) == 1).all())
