"""Vectorized building blocks of every decision model (ARCHITECTURE: formulation layer).

Each block is a function ``add_*(model, data, ...) -> <typed handle>`` that adds named variable
and constraint blocks over (branch-phase | device, time) to a :class:`LinearModel`, written once
and cited to its equation in ``METHODS.md``. Variables are ordered period-major: column
``t · n + i`` is element ``i`` in period ``t`` (every matrix is ``I_T ⊗ M``).

Modules: :mod:`.periods` (the ``I_T ⊗ M`` helper), :mod:`.injections` (loads, PV, storage, DG
and tie flows as node injections), :mod:`.network` (LinDist3Flow, lossless and loss-corrected),
:mod:`.limits` (voltage band, thermal and capability polygons, voltage deviation),
:mod:`.battery` (state of charge), :mod:`.taps` (OLTC taps as decisions), :mod:`.switches`
(switch states as decisions).
"""
