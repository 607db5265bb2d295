// Result and Status (common/result.hpp): a value or why it failed.
#include "result.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <variant>

namespace vrelay {
namespace {

Result<int> half(int n) {
  if (n % 2 != 0) return Failure{std::to_string(n) + " is odd"};
  return n / 2;
}

Status check_even(int n) {
  if (n % 2 != 0) return Failure{std::to_string(n) + " is odd"};
  return {};
}

TEST(Result, HoldsTheValue) {
  Result<int> r = half(8);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(*r, 4);
  *r = 5;
  EXPECT_EQ(*r, 5);
  EXPECT_EQ(r.value_or(-1), 5);
  EXPECT_THROW((void)r.error(), std::bad_variant_access);  // asking a success why it failed is a bug
}

TEST(Result, HoldsWhyItFailed) {
  Result<int> r = half(7);
  EXPECT_FALSE(r);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "7 is odd");
  EXPECT_EQ(r.value_or(-1), -1);
  EXPECT_THROW((void)*r, std::bad_variant_access);  // so is reading a failure's value
}

TEST(Result, AStringValueIsNotAnError) {
  Result<std::string> value = std::string("why");
  Result<std::string> failure = Failure{"why"};
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, "why");
  EXPECT_EQ(value->size(), 3u);
  ASSERT_FALSE(failure);
  EXPECT_EQ(failure.error(), "why");
}

TEST(Result, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(3);
  ASSERT_TRUE(r);
  std::unique_ptr<int> taken = std::move(*r);
  EXPECT_EQ(*taken, 3);
  const Result<std::unique_ptr<int>> failed = Failure{"none"};
  EXPECT_EQ(failed.error(), "none");
}

TEST(Status, SuccessOrWhy) {
  Status ok = check_even(2);
  EXPECT_TRUE(ok);
  EXPECT_TRUE(ok.ok());
  EXPECT_TRUE(Status());
  EXPECT_TRUE(Status::success());
  EXPECT_THROW((void)ok.error(), std::bad_optional_access);

  Status failed = check_even(3);
  EXPECT_FALSE(failed);
  EXPECT_EQ(failed.error(), "3 is odd");
  failed = Status::success();  // a Status can be reused for the next step
  EXPECT_TRUE(failed);
}

}  // namespace
}  // namespace vrelay
