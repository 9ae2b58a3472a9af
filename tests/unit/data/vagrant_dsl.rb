# Loads a Vagrantfile with a recording stand-in for Vagrant's DSL (no Vagrant, no provider) and prints,
# as JSON, what each setting was given: tests/unit/test_vagrantfile.py compares it with the file labctl
# resolved. Usage: ruby vagrant_dsl.rb <Vagrantfile>
#   `x.key = v`          -> {"key": v}
#   `x.key` (no args)    -> a nested recorder under "key" (config.vm)
#   `x.call(a, k: v)`    -> {"call()": [[a, {"k": v}], ...]}   (network, synced_folder)
#   `x.call(a) { |r..| }` -> {"call:a": [settings of r, ...]}  (define, provider: (settings, override))
require "json"

class Recorder
  def initialize
    @data = {}
  end

  def method_missing(name, *args, **kw, &blk)
    key = name.to_s
    if key.end_with?("=")
      @data[key.chomp("=")] = args.first
    elsif blk
      recorders = Array.new([blk.arity.abs, 1].max) { Recorder.new }
      blk.call(*recorders)
      @data["#{key}:#{args.first}"] = recorders
    elsif args.empty? && kw.empty?
      @data[key] ||= Recorder.new
    else
      (@data["#{key}()"] ||= []) << [*args, kw]
    end
  end

  def respond_to_missing?(*)
    true
  end

  def to_json(*a)
    @data.to_json(*a)
  end
end

module Vagrant
  def self.configure(_version)
    config = Recorder.new
    yield config
    puts JSON.generate(config)
  end
end

load ARGV.fetch(0)
