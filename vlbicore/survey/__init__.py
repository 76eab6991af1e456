"""The survey layer: campaign configs (``campaign``) and epoch sheets (``sheet``), campaigns from a folder
of files (``campaign_init``), the cross-epoch gather on xarray + Dask (``gather``), PSIS-LOO model
comparison (``compare``), plots (``plots``, shown the way ``display`` says: degrees, units, contiguous
angles), the HTML report (``report``), a campaign's state (``status``) and the shipped Snakemake
profiles (``profiles``).

Gather, compare and report read fit stores only (``vlbicore.store``); plots also builds the model from
the store's spec to draw its image; campaign_init reads uvfits headers (naming bands as ``vlbicore.data``
does). Never imports inference, likelihood or cli.
"""
