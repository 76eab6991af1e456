"""The survey layer: campaign configs (``campaign``), the cross-epoch gather on xarray + Dask
(``gather``), PSIS-LOO model comparison (``compare``), plots (``plots``) and the HTML report (``report``).

Gather, compare and report read fit stores only (``vlbicore.store``); plots also builds the model from
the store's spec to draw its image. Never imports inference, likelihood or cli.
"""
