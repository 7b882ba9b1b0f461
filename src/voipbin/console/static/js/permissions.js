// VoIPBIN's agent permission bits (src/voipbin/auth/permissions.py).

export const SUPERADMIN = 1;
export const ADMIN = 32;
export const ADMIN_OR_MANAGER = 32 | 64;
