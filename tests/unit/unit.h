/* unit.h - what every unit test of the allocator's modules includes: cmocka
 * and liballoc's internal header. */
#ifndef ALLOC_TESTS_UNIT_H
#define ALLOC_TESTS_UNIT_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "alloc_internal.h"
#endif
