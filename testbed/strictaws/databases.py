"""RDS instances backed by a real PostgreSQL server: the address DescribeDBInstances reports
accepts connections, the master password is the one the RDS API holds, and the instance's
`DBName` exists.

moto reports an endpoint under `*.rds.amazonaws.com` that nothing answers. With the bed's
PostgreSQL server (`kumo.testbed.engines`) this layer gives each PostgreSQL instance an address on
loopback from the engine gateway and keeps the gateway told what RDS holds:

- CreateDBInstance: the master user with `MasterUserPassword`, the database `DBName` (every
  instance also has `postgres`, as on RDS).
- A new master password takes effect when RDS applies it (the strict RDS layer holds it in
  `PendingModifiedValues` while `resetting-master-credentials`), not when ModifyDBInstance returns:
  an app using the new password before then fails, as it would on AWS.
- DeleteDBInstance: the address stops answering.

MySQL and MariaDB instances keep moto's unreachable endpoint (docs/testbed.md says why).
"""

from __future__ import annotations

from typing import Any

from ..engines import BACKED_ENGINES, EngineGateway
from .timings import Timings


def install(timings: Timings) -> None:
    """Patch moto's DBInstance and RDS backend when the bed gave this process a server."""
    gateway = EngineGateway.from_env()
    if gateway is None:
        return
    from moto.rds import models

    _patch_instance(models.DBInstance, gateway)
    _patch_backend(models.RDSBackend, gateway)


def _key(instance: Any) -> str:
    return f"rds/{instance.account_id}/{instance.region}/{instance.db_instance_identifier}"


def _backed(instance: Any) -> bool:
    return getattr(instance, "_kumo_backed", False)


def _patch_instance(cls: Any, gateway: EngineGateway) -> None:
    moto_address, moto_password = cls.address, cls.master_user_password

    def address(self: Any) -> str:
        served = gateway.address(_key(self)) if _backed(self) else None
        return served[0] if served else str(moto_address.fget(self))

    def set_password(self: Any, value: str | None) -> None:
        moto_password.fset(self, value)
        if _backed(self) and value:
            gateway.set_password(_key(self), self.master_username, value)

    cls.address = property(address)
    cls.master_user_password = property(moto_password.fget, set_password)


def _patch_backend(cls: Any, gateway: EngineGateway) -> None:
    moto_create, moto_delete = cls.create_db_instance, cls.delete_db_instance

    def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
        instance = moto_create(self, db_kwargs)
        if instance.engine in BACKED_ENGINES and db_kwargs.get("db_cluster_identifier") is None:
            _host, instance.port = gateway.declare(_key(instance))
            instance._kumo_backed = True
            gateway.set_password(_key(instance), instance.master_username, instance._master_user_password or "")
            gateway.add_database(_key(instance), instance.db_name or "")
        return instance

    def delete_db_instance(self: Any, db_instance_identifier: str, *args: Any, **kwargs: Any) -> Any:
        deleted = moto_delete(self, db_instance_identifier, *args, **kwargs)
        if _backed(deleted):
            gateway.remove(_key(deleted))
        return deleted

    cls.create_db_instance = create_db_instance
    cls.delete_db_instance = delete_db_instance


def wrap(app: Any) -> Any:
    """Nothing here is judged from the request itself."""
    return app
