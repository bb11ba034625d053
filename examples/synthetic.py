"""Section 3.2 of the paper: L_Sigma vs L1 on random projections of 4 sources.

A small version of `keras-covreg synthetic`; see `--help` there for every option.
"""

from keras_covreg.experiments import synthetic

config = synthetic.Config(projections=2, epochs=200)
experiment, summary = synthetic.run(config, out="runs")
print(summary)
