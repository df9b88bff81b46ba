/* unwind_frame.S - lib_call(fn): calls fn from a frame of FRAME bytes.
 * Built twice (tests/unit/CMakeLists.txt) with FRAME 24 and 40: the two
 * libraries have the same layout, so loaded in turn at one address their
 * return addresses from fn are the same pc with different frames
 * (test_unwind.c, unloaded_objects_leave_no_rules). */
  .text
  .globl lib_call
  .type lib_call, @function
lib_call:
  .cfi_startproc
  sub $FRAME, %rsp
  .cfi_def_cfa_offset FRAME + 8
  call *%rdi
  add $FRAME, %rsp
  .cfi_def_cfa_offset 8
  ret
  .cfi_endproc
  .size lib_call, .-lib_call
  .section .note.GNU-stack, "", @progbits
