#include "faultline/pager.h"

namespace faultline {

PrewarmList PrewarmList::from_boot_critical(GuestRange kernel_text, GuestRange vcpu0_stack,
                                            GuestRange fdt) {
  PrewarmList list;
  for (const GuestRange& range : {kernel_text, vcpu0_stack, fdt}) {
    if (range.size != 0) list.add(range);
  }
  return list;
}

}  // namespace faultline
