"""Scope names (nvcf-api.md 5.6) and the sets fnplane hands out."""

REGISTER_FUNCTION = "register_function"
UPDATE_FUNCTION = "update_function"
DELETE_FUNCTION = "delete_function"
DEPLOY_FUNCTION = "deploy_function"
LIST_FUNCTIONS = "list_functions"
LIST_FUNCTIONS_DETAILS = "list_functions_details"
INVOKE_FUNCTION = "invoke_function"
QUEUE_DETAILS = "queue_details"
AUTHORIZE_CLIENTS = "authorize_clients"
UPDATE_SECRETS = "update_secrets"
MANAGE_TELEMETRIES = "manage_telemetries"
MANAGE_REGISTRY_CREDENTIALS = "manage_registry_credentials"
LIST_CLUSTER_GROUPS = "list_cluster_groups"
# fnplane: manage API keys and service accounts of one's own account
MANAGE_KEYS = "manage_keys"
# super-admin: create, list and delete accounts
ACCOUNT_SETUP = "account_setup"
# compute plane: agents register clusters and report instances
CLUSTER_MANAGEMENT = "cluster-management"

ACCOUNT_SCOPES: frozenset[str] = frozenset(
    {
        REGISTER_FUNCTION,
        UPDATE_FUNCTION,
        DELETE_FUNCTION,
        DEPLOY_FUNCTION,
        LIST_FUNCTIONS,
        LIST_FUNCTIONS_DETAILS,
        INVOKE_FUNCTION,
        QUEUE_DETAILS,
        AUTHORIZE_CLIENTS,
        UPDATE_SECRETS,
        MANAGE_TELEMETRIES,
        MANAGE_REGISTRY_CREDENTIALS,
        LIST_CLUSTER_GROUPS,
        MANAGE_KEYS,
    }
)

# The bootstrap admin key of `fnplane up`: every account scope plus the super-admin and agent ones.
ADMIN_SCOPES: frozenset[str] = ACCOUNT_SCOPES | {ACCOUNT_SETUP, CLUSTER_MANAGEMENT}
# what a credential's scope must be (the 400 of a key or service account that names another)
KNOWN_SCOPE_RULE = f"must be one of {', '.join(sorted(ADMIN_SCOPES))}"

DEFAULT_ACCOUNT = "nvcf-default"
