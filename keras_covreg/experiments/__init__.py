"""The paper's three experiments: model builders, data and protocols."""
