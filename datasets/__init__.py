"""Suite adapters shipped with detbench (installed as ``detbench.datasets``)."""
