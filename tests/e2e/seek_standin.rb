# Stand-ins for the SEEK models the round trip's Ruby snippets use (tests/e2e/checks.py:
# ruby_create, ruby_delete, ruby_state), so that test_checks.py can run the snippets here with
# `ruby -r`: their syntax, the bytes they write and the line they print. Written for these tests
# after the behaviour of seek4science/seek v1.18.1 that the snippets rely on (see checks.py),
# nothing more: a ContentBlob writes its `data` to <filestore>/assets/<uuid>.dat when saved and
# records file_size and sha1sum; a DataFile saves its new content_blob and a first version. Rows
# live in a JSON file between runs (E2E_STANDIN_DB), files under E2E_STANDIN_FILESTORE. The real
# models run in users' CI (molecule full).
require 'json'
require 'digest'
require 'securerandom'
require 'fileutils'

module Standin
  DB = ENV.fetch('E2E_STANDIN_DB')
  FILESTORE = ENV.fetch('E2E_STANDIN_FILESTORE')

  def self.tables
    @tables ||= File.exist?(DB) ? JSON.parse(File.read(DB)) : {}
  end

  at_exit { File.write(DB, JSON.generate(tables)) }
end

# The query methods the snippets call, over the rows of one table.
class Relation
  include Enumerable

  def initialize(model, rows)
    @model = model
    @rows = rows
  end

  def where(**conds)
    Relation.new(@model, @rows.select do |row|
      conds.all? { |col, val| val.is_a?(Array) ? val.include?(row[col.to_s]) : row[col.to_s] == val }
    end)
  end

  def each(&block)
    @rows.map { |row| @model.new(row) }.each(&block)
  end

  def pluck(col)
    @rows.map { |row| row[col.to_s] }
  end

  def count
    @rows.size
  end

  def exists?
    !@rows.empty?
  end

  def delete_all
    @rows.each { |row| @model.table.delete(row) }.size
  end
end

# A row of a table, with the ActiveRecord methods the snippets call.
class Model
  def self.table
    Standin.tables[name] ||= []
  end

  def self.where(**conds)
    Relation.new(self, table).where(**conds)
  end

  def self.find_or_create_by!(**attrs)
    where(**attrs).first || new(attrs).save!
  end

  def self.attribute(*names)
    names.each do |col|
      define_method(col) { @row[col.to_s] }
      define_method("#{col}=") { |val| @row[col.to_s] = val }
    end
  end

  def initialize(row = {})
    @row = row.transform_keys(&:to_s)
  end

  def [](col)
    @row[col.to_s]
  end

  def id
    @row['id']
  end

  def save!
    unless id
      @row['id'] = (self.class.table.map { |row| row['id'] }.max || 0) + 1
      self.class.table << @row
    end
    self
  end

  def delete
    self.class.table.delete_if { |row| row['id'] == id }
  end
end

class Project < Model
  attribute :title
end

class DataFile < Model
  attribute :title
  attr_accessor :projects, :content_blob

  class Version < Model
    attribute :data_file_id
  end

  def save!
    super
    Version.new(data_file_id: id).save!
    content_blob.asset_type = 'DataFile'
    content_blob.asset_id = id
    content_blob.save!
    self
  end
end

class ContentBlob < Model
  attribute :uuid, :asset_type, :asset_id, :file_size, :sha1sum, :original_filename, :content_type

  def initialize(row = {})
    row = row.transform_keys(&:to_s)
    @data = row.delete('data')
    super(row)
  end

  def filepath
    File.join(Standin::FILESTORE, 'assets', "#{uuid}.dat")
  end

  def save!
    self.uuid ||= SecureRandom.uuid
    if @data
      FileUtils.mkdir_p(File.dirname(filepath))
      File.binwrite(filepath, @data)
    end
    self.file_size = File.size(filepath)
    self.sha1sum = Digest::SHA1.file(filepath).hexdigest
    super
  end
end

def disable_authorization_checks
  yield
end
