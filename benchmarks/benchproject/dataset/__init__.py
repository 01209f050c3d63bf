"""A data migration that loads a data set into the schema, when
``BENCHPROJECT_DATASET`` names one: the rows Django's serialized_rollback
restores before each test, as a project's data migrations' rows are."""
