// Default sanitizer options for every faultline executable in a sanitizer
// build (only compiled there). ASAN_OPTIONS, UBSAN_OPTIONS and TSAN_OPTIONS in
// the environment still override them.
//
// The tests catch SIGBUS from poisoned guest pages themselves (siglongjmp out
// of their own handler), so the sanitizers must leave SIGBUS to them.
extern "C" {

const char* __asan_default_options() {
  return "handle_sigbus=0:allow_user_segv_handler=1:halt_on_error=1:detect_leaks=1:"
         "detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1";
}

const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

const char* __tsan_default_options() {
  return "halt_on_error=1:second_deadlock_stack=1:handle_sigbus=0";
}

}  // extern "C"
