# Build step of vrelayd: turns the status page (INPUT, server/http/status.html) into a C++
# header (OUTPUT) holding it as one raw string literal, kStatusHtml.
# Usage: cmake -DINPUT=status.html -DOUTPUT=status_html.hpp -P embed.cmake
file(READ "${INPUT}" page)
set(delimiter "vrelay_html")  # at most 16 characters
string(FIND "${page}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter ')${delimiter}\"'")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by server/http/embed.cmake: edit the HTML file, not this one.\n"
  "#pragma once\n"
  "namespace vrelay {\n"
  "inline constexpr char kStatusHtml[] = R\"${delimiter}(${page})${delimiter}\";\n"
  "}  // namespace vrelay\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
