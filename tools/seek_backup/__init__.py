"""seek_backup: off-site copies of the seek-k3s backup sets (age encryption, S3 through boto3).

See docs/backups.md for the backup volume layout, the configuration and every command.
"""

__version__ = "0.1.0"
