"""The Parquet feature store: the project's data contract (see README, "Feature store")."""
from .arrays import import_arrays
from .catalog import FeatureStore, default_root
from .featureset import FeatureSet
from .items import DatasetItems
from .matrix import feature_matrix
from .schema import PROVENANCE_KEY, REJECT_SCHEMA, feature_schema, make_provenance

__all__ = ["FeatureStore", "FeatureSet", "DatasetItems", "default_root", "import_arrays", "feature_matrix",
           "PROVENANCE_KEY", "REJECT_SCHEMA", "feature_schema", "make_provenance"]
