// What an operation that can fail returns: its value, or why it failed (a message a person
// can act on). One idiom for the whole project: no "" for success, no optional + string*
// out-parameter, no -1 + string*; exceptions stay for what cannot go on (startup, bugs).
//
//   Result<Endpoint> parse_endpoint(std::string_view text);   // return ep; or return Failure{"..."};
//   if (auto ep = parse_endpoint(text)) use(*ep); else complain(ep.error());
//   Status use_file(const std::string& path);                 // return {}; or return Failure{"..."};
//
// Reading the value of a failure, or the error of a success, is a bug: it throws
// std::bad_variant_access or std::bad_optional_access.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace vrelay {

// Why an operation failed.
struct Failure {
  std::string why;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  Result(Failure failure) : state_(std::in_place_index<1>, std::move(failure)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() { return std::get<0>(state_); }
  const T& operator*() const { return std::get<0>(state_); }
  T* operator->() { return &std::get<0>(state_); }
  const T* operator->() const { return &std::get<0>(state_); }
  T value_or(T fallback) const { return ok() ? std::get<0>(state_) : std::move(fallback); }
  const std::string& error() const { return std::get<1>(state_).why; }

 private:
  std::variant<T, Failure> state_;
};

// An operation that gives nothing back: success, or why it failed.
class [[nodiscard]] Status {
 public:
  Status() = default;  // success
  Status(Failure failure) : failure_(std::move(failure)) {}
  static Status success() { return {}; }

  bool ok() const { return !failure_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { return failure_.value().why; }

 private:
  std::optional<Failure> failure_;
};

}  // namespace vrelay
