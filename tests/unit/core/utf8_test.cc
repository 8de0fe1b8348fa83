#include "core/utf8.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace nightshift {
namespace {

TEST(Utf8Test, ValidTextHasNoBadByte) {
  EXPECT_EQ(FindInvalidUtf8(""), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("plain ASCII, long enough to take the eight-byte path"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x8C\x99"), std::nullopt);  // é € 🌙
  EXPECT_EQ(FindInvalidUtf8(std::string("nul \0 inside", 12)), std::nullopt);
}

TEST(Utf8Test, FindsTheFirstBadByte) {
  EXPECT_EQ(FindInvalidUtf8("caf\xE9"), 3u);                      // Latin-1 é
  EXPECT_EQ(FindInvalidUtf8("0123456789abcdef\xE9"), 16u);        // after the fast path
  EXPECT_EQ(FindInvalidUtf8("ok \xC3"), 3u);                      // cut short at the end
  EXPECT_EQ(FindInvalidUtf8("\xC0\xAF"), 0u);                     // overlong "/"
  EXPECT_EQ(FindInvalidUtf8("\xE0\x80\xAF"), 0u);                 // overlong, three bytes
  EXPECT_EQ(FindInvalidUtf8("\xED\xA0\x80"), 0u);                 // a UTF-16 surrogate
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);             // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("\x80"), 0u);                         // a lone continuation byte
  EXPECT_EQ(FindInvalidUtf8("\xE2\x82" "x"), 0u);                 // a sequence broken off
  EXPECT_EQ(FindInvalidUtf8(std::string_view("\xFF\xFE" "a\0", 4)), 0u);  // UTF-16 with its BOM
}

TEST(Utf8Test, PositionsCountLinesAndCharacters) {
  const std::string text = "first\nsecond \xC3\xA9t\xC3\xA9 \xE9";
  const TextPosition at = PositionOfOffset(text, *FindInvalidUtf8(text));
  EXPECT_EQ(at.line, 2);
  EXPECT_EQ(at.column, 12);  // after "second été ", 11 characters in 13 bytes
  EXPECT_EQ(PositionOfOffset("abc", 0).column, 1);
  EXPECT_EQ(PositionOfOffset("a\n\nb", 3).line, 3);
}

TEST(Utf8Test, MessageNamesTheByte) { EXPECT_EQ(InvalidUtf8Message(0xE9), "not valid UTF-8 (byte 0xE9)"); }

}  // namespace
}  // namespace nightshift
