# embed_sql.cmake - run with cmake -P: writes OUT, a C file defining the
# migrations in schema/ (files NNN_name.sql, applied in order) as
#   const struct schema_migration schema_migrations[]; const int schema_count;
# Arguments: -DSCHEMA_DIR=... -DOUT=...
file(GLOB files RELATIVE ${SCHEMA_DIR} ${SCHEMA_DIR}/[0-9][0-9][0-9]_*.sql)
list(SORT files)
set(body "/* Generated from the files in schema/ by cmake/embed_sql.cmake: do not edit. */\n#include \"schema.h\"\n\n")
set(table "const struct schema_migration schema_migrations[] = {\n")
set(n 0)
foreach(f IN LISTS files)
  string(SUBSTRING ${f} 0 3 num)
  math(EXPR version "${num}")   # strips leading zeros
  file(READ ${SCHEMA_DIR}/${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char sql_${n}[] = {${bytes}0};\n")
  string(APPEND table "  {${version}, \"${f}\", sql_${n}},\n")
  math(EXPR n "${n} + 1")
endforeach()
string(APPEND table "};\nconst int schema_count = ${n};\n")
file(WRITE ${OUT}.tmp "${body}\n${table}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
