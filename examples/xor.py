"""Section 3.3 of the paper: does L_Sigma find the minimal XOR network?

A small version of `keras-covreg xor`; see `--help` there for every option.
"""

from keras_covreg.experiments import xor

experiment, summary = xor.run(xor.Config(seeds=5), out="runs")
print(summary)
