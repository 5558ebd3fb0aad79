"""What draws: ``airq_nb.ui.charts`` (Bokeh) and ``airq_nb.ui.widgets`` (ipywidgets).

Neither is imported by ``import airq_nb``; import the one you use.
"""
