/* schema.h - the database migrations of schema/, compiled into allocd
 * (cmake/embed_sql.cmake generates their definition). */
#ifndef ALLOCD_SCHEMA_H
#define ALLOCD_SCHEMA_H

struct schema_migration {
  int version;        /* NNN of schema/NNN_name.sql; PRAGMA user_version after it */
  const char *name;
  const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const int schema_count;

#endif
