// Which faults continue a sequential stream. Each server thread keeps a few
// streams; a fault at or just past where a stream's last window ended grows
// that stream's window (x2), any other fault starts a new stream of one page.
#pragma once

#include <array>
#include <cstdint>

#include "faultline/page_source.h"

namespace faultline {

class FaultStreams {
 public:
  explicit FaultStreams(uint64_t max_window_pages) : max_pages_(max_window_pages) {}

  // The window, in pages, for a fault on the page at `host_page`; a new
  // stream starts at `first_window` pages.
  uint64_t window_for(uint64_t host_page, uint64_t /*page_size*/, uint64_t first_window = 1) {
    ++clock_;
    for (Stream& s : streams_) {
      // Windows count 4 KiB pages whatever the mapping's page size.
      if (s.window != 0 && host_page >= s.next && host_page < s.next + s.window * kMinPageSize) {
        s.window = s.window * 2 > max_pages_ ? max_pages_ : s.window * 2;
        s.used = clock_;
        current_ = &s;
        continued_ = true;
        return s.window;
      }
    }
    Stream* oldest = &streams_[0];
    for (Stream& s : streams_) {
      if (s.used < oldest->used) oldest = &s;
    }
    const uint64_t first =
        first_window < 1 ? 1 : (first_window > max_pages_ ? max_pages_ : first_window);
    *oldest = Stream{host_page, first, clock_};
    current_ = oldest;
    continued_ = false;
    return first;
  }

  // Whether the last window_for continued a stream (else it started one).
  bool continued() const { return continued_; }

  // Where the window just served ended.
  void served_until(uint64_t host_end) {
    if (current_ != nullptr) current_->next = host_end;
  }

 private:
  struct Stream {
    uint64_t next = 0;    // host address just past the last window
    uint64_t window = 0;  // pages; 0 = unused slot
    uint64_t used = 0;
  };
  std::array<Stream, 8> streams_{};
  Stream* current_ = nullptr;
  bool continued_ = false;
  uint64_t clock_ = 0;
  uint64_t max_pages_;
};

}  // namespace faultline
