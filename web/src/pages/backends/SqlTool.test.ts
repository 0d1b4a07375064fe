import { describe, expect, it } from "vitest";
import { parseParamDescriptions } from "./SqlTool";

describe("parseParamDescriptions", () => {
  it("reads one name: description per line and keeps colons in the description", () => {
    expect(parseParamDescriptions("min_total: Smallest total\n id : Order id: as shown\n")).toEqual({
      min_total: "Smallest total",
      id: "Order id: as shown",
    });
  });
  it("skips blank lines, lines without a name and names without a description", () => {
    expect(parseParamDescriptions("\n: orphan\nlimit:\nnothing here")).toEqual({});
  });
});
