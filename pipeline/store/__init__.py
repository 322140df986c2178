"""The Parquet feature store: the project's data contract (see README, "Feature store")."""
from .catalog import FeatureStore, default_root
from .featureset import FeatureSet, empty_rejects, features_table
from .reading import feature_matrix
from .schema import PROVENANCE_KEY, REJECT_SCHEMA, feature_schema, make_provenance

__all__ = ["FeatureStore", "FeatureSet", "default_root", "empty_rejects", "features_table", "feature_matrix",
           "PROVENANCE_KEY", "REJECT_SCHEMA", "feature_schema", "make_provenance"]
