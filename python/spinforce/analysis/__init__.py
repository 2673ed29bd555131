"""Analysis of spin configurations and trajectories: local order fields, structure factors,
coarsening length scales, ferromagnetic clusters, plots. See docs/analysis.md."""
from .fields import (TETRAHEDRAL_CHIRALITY, bond_average, bond_products, magnetization,
                     plaquette_chirality, scalar_chirality, site_chirality, triangles)
from .structure import (correlation_function, distance_to_peaks, peak_wavevectors, q_grid,
                        radial_correlation, reciprocal_vectors, structure_factor)
from .coarsening import (LATTICE_DIRECTIONS, PowerLawFit, cluster_statistics, connected_components,
                         correlation_length, ferromagnetic_clusters, fit_power_law, site_clusters,
                         structure_factor_length, wall_direction_fractions, window_sensitivity)
from .ensemble import ensemble_lengths, jackknife_fit, jackknife_stderr, mean_stderr
from .run import (FrameAnalyzer, RunAnalysis, analyze_run, default_fit_window, frame_times,
                  mean_radial_correlation)
from .plots import (plot_cluster_statistics, plot_correlation_comparison, plot_length_scales,
                    plot_snapshot)

__all__ = [
    "TETRAHEDRAL_CHIRALITY", "bond_average", "bond_products", "magnetization", "plaquette_chirality",
    "scalar_chirality", "site_chirality", "triangles", "correlation_function", "distance_to_peaks",
    "peak_wavevectors", "q_grid", "radial_correlation", "reciprocal_vectors", "structure_factor",
    "PowerLawFit", "cluster_statistics", "connected_components", "correlation_length",
    "ferromagnetic_clusters", "fit_power_law", "structure_factor_length", "LATTICE_DIRECTIONS", "site_clusters",
    "wall_direction_fractions", "window_sensitivity", "ensemble_lengths", "jackknife_fit", "jackknife_stderr", "mean_stderr", "FrameAnalyzer", "RunAnalysis",
    "analyze_run", "default_fit_window", "frame_times", "mean_radial_correlation", "plot_cluster_statistics", "plot_correlation_comparison",
    "plot_length_scales", "plot_snapshot",
]
